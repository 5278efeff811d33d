/**
 * Tensor-parallel loads: for 1, 2, 4 and 8 ranks on a TinyLlama-shaped 1.1B-parameter bf16 checkpoint (with its
 * config.json, plan "llama"), each rank its own process, started together as a launcher starts them (each told
 * its rank by RANK/WORLD_SIZE, as torchrun does; a barrier on stdin releases them at once). Per rank: bytes read
 * from storage (/proc/self/io read_bytes) and time, cold (the file evicted with posix_fadvise(DONTNEED)) and warm
 * (the whole file in the page cache), for three loaders in the same run:
 *   - tensormap slices: loadToDevice(folder, { device: "cpu", plan: "llama" }), only the rank's bytes;
 *   - whole, then slice: loadToDevice(folder, { device: "cpu" }), then the rank's parts copied out (a naive loader);
 *   - safetensors get_slice (Python): safe_open + get_slice per tensor, as vLLM does (bench/ranks_peers.py), when
 *     `bash /work/shared/tools/peers-venv` gives a Python with safetensors and torch.
 * Best of RUNS runs each (default 2), taken in interleaved rounds. Not a test.
 *
 *   bun bench/ranks.ts [--runs N] [--ranks 1,2,4,8] [--no-python]      # or: deno run -A bench/ranks.ts
 *
 * The checkpoint goes to bench/data/tinyllama-1.1b-ranks/ (git-ignored, ~2.2 GB), made once.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { POSIX_FADV_DONTNEED } from "../ffi/types.ts";
import { runtime } from "../ffi/runtime.ts";
import { open } from "../src/checkpoint/open.ts";
import { loadToDevice } from "../src/device/load.ts";
import { launchRank } from "../src/device/ranks.ts";
import type { HostTensor } from "../src/device/tensors.ts";
import { planSplit, splitRuns, type ModelConfig } from "../src/device/tp-plan.ts";
import { DTYPES } from "../src/format/dtypes.ts";
import { loadLibc } from "../src/io/libc.ts";
import { DATA_DIR, generated, peersPython, writeTinyLlama } from "./support.ts";

const self = fileURLToPath(import.meta.url);
const PAGE = 4096;
/** TinyLlama-1.1B's config.json, the parts the llama plan reads. */
const CONFIG = { model_type: "llama", hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000 };

type Contender = "slices" | "whole" | "python";
const LABELS: Record<Contender, string> = { slices: "tensormap slices", whole: "whole, then slice", python: "safetensors get_slice (py)" };

interface RankResult {
  seconds: number;
  readBytes: number;
  /** The bytes the rank holds afterwards. */
  share: number;
}

const storageReads = () => Number(/read_bytes: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))![1]);

// ---- a rank: one process ----------------------------------------------------------------------------------

/** Waits for the parent's "go" (one line on stdin), so that every rank starts loading at the same moment. */
function released(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.once("data", () => {
      process.stdin.pause();
      resolve();
    });
  });
}

/** The rank's parts cut out of whole tensors already in memory, as a loader that slices after loading does. */
function cutParts(weights: Iterable<[string, HostTensor]>, config: ModelConfig): Uint8Array[] {
  const at = launchRank();
  const parts: Uint8Array[] = [];
  for (const [name, t] of weights) {
    const { runs, byteLength } = splitRuns(name, t.shape, DTYPES.get(t.dtype)!.bits, planSplit(name, t, at, "llama", config));
    const out = new Uint8Array(byteLength);
    runs.reduce((filled, [offset, length]) => (out.set(t.bytes.subarray(offset, offset + length), filled), filled + length), 0);
    parts.push(out);
  }
  return parts;
}

async function rank(contender: Contender, folder: string): Promise<RankResult> {
  await loadLibc(); // outside the clock, as Python's imports are
  const config = JSON.parse(readFileSync(join(folder, "config.json"), "utf8")) as ModelConfig;
  console.log("ready");
  await released();
  const before = storageReads();
  const t0 = performance.now();
  if (contender === "slices") {
    using w = await loadToDevice(folder, { device: "cpu", plan: "llama" });
    return { seconds: (performance.now() - t0) / 1000, readBytes: storageReads() - before, share: w.bytes };
  }
  using w = await loadToDevice(folder, { device: "cpu" });
  const parts = cutParts(w as Iterable<[string, HostTensor]>, config);
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, readBytes: storageReads() - before, share: parts.reduce((a, p) => a + p.byteLength, 0) };
}

// ---- the launcher -----------------------------------------------------------------------------------------

/** The checkpoint: TinyLlama's tensors in bf16 (writeTinyLlama) beside its config.json. */
async function checkpoint(): Promise<string> {
  const folder = join(DATA_DIR, "tinyllama-1.1b-ranks");
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "config.json"), JSON.stringify(CONFIG));
  await generated("tinyllama-1.1b-ranks/model.safetensors", (path) => writeTinyLlama(path));
  return folder;
}

function rankArgv(contender: Contender, folder: string, python: string | undefined): string[] {
  if (contender === "python") return [python!, join(fileURLToPath(new URL(".", import.meta.url)), "ranks_peers.py"), folder];
  const args = ["--rank", contender, folder];
  return runtime === "deno" ? [process.execPath, "run", "-A", self, ...args] : [process.execPath, self, ...args];
}

/** Starts ranks `which` of a world of `world`, waits until each is ready, runs `before` (eviction), releases them at once. */
async function launch(argv: string[], world: number, which: number[], before: () => void): Promise<RankResult[]> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|OMPI_|PMI_|SLURM_)/.test(k)));
  const ranks = which.map((r) => {
    const env = { ...clean, RANK: `${r}`, WORLD_SIZE: `${world}`, LOCAL_RANK: `${r}`, LOCAL_WORLD_SIZE: `${world}` };
    const p = spawn(argv[0]!, argv.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const ready = new Promise<void>((resolve) => p.stdout.on("data", (d) => ((out += d), out.includes("ready\n") && resolve())));
    p.stderr.on("data", (d) => (err += d));
    const done = new Promise<RankResult>((resolve, reject) =>
      p.on("close", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").at(-1)!)) : reject(new Error(`rank ${r} of ${argv.join(" ")} exited ${code}: ${err.trim().split("\n").at(-1)}`)))),
    );
    return { p, ready, done };
  });
  await Promise.all(ranks.map((r) => Promise.race([r.ready, r.done])));
  before();
  for (const r of ranks) r.p.stdin.end("go\n");
  return Promise.all(ranks.map((r) => r.done));
}

/**
 * What rank `r` of `world` must hold (its share), and the page floor: the bytes of the distinct pages its runs and
 * the header touch, the least a reader through the page cache can read (a part of a row thinner than a page, such
 * as o_proj's 512 bytes of each 4 KiB row at 8 ranks, costs the whole page).
 */
async function shares(path: string, world: number, config: ModelConfig): Promise<Array<{ share: number; floor: number }>> {
  using file = await open(path);
  const names = file.offsetKeys();
  return Array.from({ length: world }, (_, rank) => {
    let share = 0;
    let pages = Math.ceil(file.entry(names[0]!).start / PAGE);
    let counted = pages - 1;
    for (const name of names) {
      const e = file.entry(name);
      const part = splitRuns(name, e.shape, DTYPES.get(e.dtype)!.bits, planSplit(name, e, { rank, worldSize: world }, "llama", config));
      share += part.byteLength;
      for (const [offset, length] of part.runs) {
        const first = Math.max(Math.floor((e.start + offset) / PAGE), counted + 1);
        const last = Math.floor((e.start + offset + length - 1) / PAGE);
        if (last >= first) pages += last - first + 1;
        counted = Math.max(counted, last);
      }
    }
    return { share, floor: pages * PAGE };
  });
}

/** The peers' Python, if safetensors and torch import there. */
function peerPython(): string | undefined {
  const peers = peersPython();
  return "path" in peers && spawnSync(peers.path, ["-c", "import safetensors, torch"]).status === 0 ? peers.path : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--rank") {
    console.log(JSON.stringify(await rank(args[1] as Contender, args[2]!)));
    return;
  }
  const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const runs = Number(flag("--runs") ?? 2);
  const worlds = (flag("--ranks") ?? "1,2,4,8").split(",").map(Number);
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new Error(`the benchmark evicts files through libc: ${libc.unavailable}`);
  const folder = await checkpoint();
  const path = join(folder, "model.safetensors");
  const evict = () => {
    const fd = libc.openRead(path);
    libc.posixFadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    libc.close(fd);
  };
  const rewarm = () => {
    const fd = openSync(path, "r");
    const buf = new Uint8Array(16 << 20);
    while (readSync(fd, buf, 0, buf.length, null) > 0);
    closeSync(fd);
  };
  const python = args.includes("--no-python") ? undefined : peerPython();
  const contenders: Contender[] = python ? ["slices", "whole", "python"] : ["slices", "whole"];
  const size = statSync(path).size;
  console.log(`tensor-parallel loads — ${runtime}, ${path}: ${(size / 1e9).toFixed(2)} GB, best of ${runs}; load average at start ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}${python ? "" : "; no Python peer"}`);

  // Together: the world's ranks at once, as a launcher runs them (they share the page cache: a page two ranks need
  // is read from storage by whichever faults first, so only the sum of their reads means much). Alone: each rank by
  // itself on a cold cache, what it reads when no other rank shares its machine (the whole-file loader reads the
  // whole file whichever rank it is: rank 0 stands for all).
  interface Cell { cold: RankResult[]; warm: RankResult[]; coldMax: number; warmMax: number; alone: RankResult[] }
  const table = new Map<string, Cell>();
  const key = (c: Contender, n: number) => `${c}/${n}`;
  const all = (n: number) => Array.from({ length: n }, (_, r) => r);
  for (const n of worlds) for (const c of contenders) table.set(key(c, n), { cold: [], warm: [], coldMax: Infinity, warmMax: Infinity, alone: [] });
  // Rounds: every (world, loader) once per round, so a shared machine's drift falls on all alike.
  for (let round = 0; round < runs; round++) {
    for (const n of worlds) {
      for (const c of contenders) {
        const cell = table.get(key(c, n))!;
        const cold = await launch(rankArgv(c, folder, python), n, all(n), evict);
        const coldMax = Math.max(...cold.map((r) => r.seconds));
        if (coldMax < cell.coldMax) Object.assign(cell, { cold, coldMax });
        rewarm();
        const warm = await launch(rankArgv(c, folder, python), n, all(n), () => {});
        const warmMax = Math.max(...warm.map((r) => r.seconds));
        if (warmMax < cell.warmMax) Object.assign(cell, { warm, warmMax });
      }
    }
  }
  for (const n of worlds) {
    for (const c of contenders) {
      for (let r = 0; r < (c === "whole" ? 1 : n); r++) table.get(key(c, n))!.alone.push(...(await launch(rankArgv(c, folder, python), n, [r], evict)));
    }
  }

  const gb = (b: number) => (b / 1e9).toFixed(2);
  const max = (xs: number[]) => Math.max(...xs);
  console.log(`\n${"".padEnd(33)}|       together (all ranks at once)        |          each rank alone, cold`);
  console.log(`${"ranks  loader".padEnd(33)}| cold s  warm s  sum read GB  ×1 rank  ×tm | read GB  share GB  read/share  read/page floor  cold s`);
  for (const n of worlds) {
    const want = await shares(path, n, CONFIG);
    for (const c of contenders) {
      const cell = table.get(key(c, n))!;
      const one = table.get(key(c, worlds[0]!))!.coldMax;
      const slices = table.get(key("slices", n))!.coldMax;
      const held = [...cell.cold, ...cell.alone].every((r) => want.some((w) => w.share === r.share)) ? "" : "  (holds other than a rank's share!)";
      // `alone` is in rank order.
      const wantOf = (i: number) => want[i]!;
      console.log(
        [
          `${n}`.padStart(5),
          LABELS[c].padEnd(26),
          "|",
          cell.coldMax.toFixed(2).padStart(6),
          cell.warmMax.toFixed(2).padStart(6),
          gb(cell.cold.reduce((a, r) => a + r.readBytes, 0)).padStart(11),
          `${(cell.coldMax / one).toFixed(2)}×`.padStart(7),
          `${(cell.coldMax / slices).toFixed(2)}×`.padStart(4),
          "|",
          gb(max(cell.alone.map((r) => r.readBytes))).padStart(7),
          gb(max(want.map((w) => w.share))).padStart(8),
          `${max(cell.alone.map((r, i) => r.readBytes / wantOf(i).share)).toFixed(2)}×`.padStart(10),
          `${max(cell.alone.map((r, i) => r.readBytes / wantOf(i).floor)).toFixed(2)}×`.padStart(15),
          max(cell.alone.map((r) => r.seconds)).toFixed(2).padStart(6),
        ].join(" ") + held,
      );
    }
  }
  console.log(
    `\ntime per rank: the slowest rank's; ×1 rank: cold together against ${worlds[0]} rank${worlds[0] === 1 ? "" : "s"}; ×tm: against tensormap slices at the same world size; ` +
      `page floor: the distinct 4 KiB pages of the rank's runs and the header. Targets: tensormap's read/page floor ≤ 1.00×, cold time falling with the ranks until the disk saturates.`,
  );
}

await main();
