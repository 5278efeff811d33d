/**
 * How fast does a checkpoint load? Open + every tensor's bytes + one byte touched per 4 KiB page, warm and
 * cold (evicted with posix_fadvise(DONTNEED)), for tensormap under Bun, Deno, Node 26 (node:ffi) and an older
 * Node (read backend only: it has no FFI) and for the peers, each timed inside its own process, all in one run:
 * the median of 7 warm and 5 cold runs each, taken in interleaved rounds. Closing the file is not part of the
 * load (the Python peers free theirs at exit) and is shown apart. Not a test.
 *
 *   bun bench/load.ts            # or: deno run -A bench/load.ts
 *   bun bench/load.ts --quick    # fewer repetitions
 *   bun bench/load.ts --clean    # delete the generated checkpoints afterwards
 *
 * Files go to bench/data/ (git-ignored): a Llama-shaped 1.1B-parameter bf16 checkpoint (~2.2 GB, 201 tensors)
 * and a 20,000-tensor file. Python peers run through bench/peers.py with $PYTHON, else /usr/bin/python3, when
 * torch imports there (`bash ../shared/tools/peers-venv` makes one).
 */
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { POSIX_FADV_DONTNEED } from "../ffi/types.ts";
import { loadLibc } from "../src/io/libc.ts";
import { fillRandom } from "../src/cli/random.ts";
import { planHeader } from "../src/format/writer.ts";
import { touchPages } from "../src/io/mmap.ts";
import { open } from "../src/checkpoint/open.ts";
import { jsRuntimes, tinyLlamaShapes } from "./support.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const data = join(here, "data");
const self = fileURLToPath(import.meta.url);

interface Spec {
  name: string;
  dtype: "BF16" | "F16" | "F32";
  shape: number[];
}
const BYTES = { BF16: 2, F16: 2, F32: 4 } as const;

/** TinyLlama-1.1B, all bf16. */
function llama(): Spec[] {
  return tinyLlamaShapes().map(([name, shape]) => ({ name, dtype: "BF16", shape }));
}

/** 20,000 small tensors of three kinds, some smaller than a page. */
function many(): Spec[] {
  const kinds: Array<Omit<Spec, "name">> = [
    { dtype: "F16", shape: [64, 64] },
    { dtype: "F32", shape: [4096] },
    { dtype: "BF16", shape: [16, 16] },
  ];
  return Array.from({ length: 20_000 }, (_, i) => ({ name: `blocks.${i}.weight`, ...kinds[i % 3]! }));
}

const nbytes = (s: Spec) => s.shape.reduce((a, b) => a * b, 1) * BYTES[s.dtype];

/** Writes a safetensors file with pseudo-random data (never sparse: cold reads must hit the disk). */
function generate(path: string, specs: Spec[]): void {
  const { header } = planHeader(specs.map((s) => [s.name, { dtype: s.dtype, shape: s.shape, byteLength: nbytes(s) }]), { format: "pt" });
  const at = specs.reduce((n, s) => n + nbytes(s), 0);
  const block = fillRandom(new Uint32Array(16 * 2 ** 20), 2463534242);
  const bytes = new Uint8Array(block.buffer);
  const fd = openSync(`${path}.tmp`, "w");
  writeSync(fd, header);
  for (let left = at, n = 0; left > 0; n++) {
    block[0] = n;
    const k = Math.min(left, bytes.length);
    writeSync(fd, bytes, 0, k);
    left -= k;
  }
  fsyncSync(fd);
  closeSync(fd);
  renameSync(`${path}.tmp`, path);
}

// ---- workers: one measurement each, in a process of its own -------------------------------------------

type Contender = "mmap" | "mmap-sequential" | "mmap-populate" | "read" | "seqread";

async function work(contender: Contender, path: string): Promise<{ seconds: number; open: number; close: number; checksum: number }> {
  // Outside the clock, as Python's imports are: loading libc, and compiling the benchmark's own page toucher.
  await loadLibc();
  // Enough calls and reads that the JIT has compiled it (256 reads, once, left V8 interpreting the first tensors).
  const warmup = new Uint8Array(1 << 20);
  for (let i = 0; i < 50; i++) touchPages(warmup, 64);
  const t0 = performance.now();
  let t1 = t0;
  let checksum = 0;
  let close = () => {};
  if (contender === "seqread") {
    const fd = openSync(path, "r");
    const buf = new Uint8Array(16 * 2 ** 20);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) checksum += buf[n - 1]!;
    close = () => closeSync(fd);
  } else {
    const file = await open(path, {
      backend: contender === "read" ? "read" : "mmap",
      advice: contender === "mmap-sequential" ? "sequential" : "none",
      populate: contender === "mmap-populate",
    });
    t1 = performance.now();
    for (const k of file.offsetKeys()) checksum += touchPages(file.tensor(k).bytes);
    close = () => file.close();
  }
  // The load ends with the last page read, as the Python peers' does (their tensors are freed at exit):
  // releasing the mapping is timed on its own.
  const t2 = performance.now();
  close();
  return { seconds: (t2 - t0) / 1000, open: (t1 - t0) / 1000, close: (performance.now() - t2) / 1000, checksum };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1]! : 0;
}

// ---- the orchestra --------------------------------------------------------------------------------------

interface Runner {
  label: string;
  argv: (path: string, pt: string) => string[];
  /** The file the contender reads (the .pt copy for torch.load). */
  pt?: boolean;
  /** Timed from outside (a tool that cannot time itself); process start-up is then included. */
  wall?: boolean;
}

const MMAP_CONTENDERS = ["mmap", "mmap-sequential", "mmap-populate"] as const;

function runners(python: string | undefined, pyInfo: { safetensors: string; torchLoad: string }): Runner[] {
  const out: Runner[] = [];
  for (const rt of jsRuntimes()) {
    // A runtime without FFI (Node before 26) has the read backend only.
    const contenders: Contender[] = rt.backend === "mmap" ? [...MMAP_CONTENDERS, "read", "seqread"] : ["read", "seqread"];
    for (const c of contenders) out.push({ label: `tensormap ${c} (${rt.name})`, argv: (path) => rt.argv(self, ["--worker", c, path]) });
  }
  out.push({ label: "cat FILE > /dev/null (wall clock)", argv: (path) => ["sh", "-c", `cat '${path}' > /dev/null`], wall: true });
  if (python) {
    out.push({ label: pyInfo.safetensors, argv: (path) => [python, join(here, "peers.py"), "safetensors", path] });
    out.push({ label: pyInfo.torchLoad, argv: (_, pt) => [python, join(here, "peers.py"), "torch-load", pt], pt: true });
  }
  return out;
}

function measure(argv: string[], wall = false): { seconds: number; open?: number; close?: number } {
  const t0 = performance.now();
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", cwd: root, maxBuffer: 1 << 24 });
  const seconds = (performance.now() - t0) / 1000;
  if (wall && r.status === 0) return { seconds };
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) throw new Error(`${argv.join(" ")} failed: ${r.stderr.trim().split("\n").pop()}`);
  return JSON.parse(line);
}

/** The same page-cache state for every contender's warm runs: evicted, then read once sequentially. */
function rewarm(evict: (path: string) => void, path: string): void {
  evict(path);
  const fd = openSync(path, "r");
  const buf = new Uint8Array(16 * 2 ** 20);
  while (readSync(fd, buf, 0, buf.length, null) > 0);
  closeSync(fd);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === "--worker") {
    console.log(JSON.stringify(await work(args[1] as Contender, args[2]!)));
    return;
  }
  const quick = args.includes("--quick");
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new Error(`the benchmark evicts files through libc: ${libc.unavailable}`);
  const evict = (path: string) => {
    const fd = libc.openRead(path);
    libc.posixFadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    libc.close(fd);
  };
  mkdirSync(data, { recursive: true });
  const python = [process.env.PYTHON, "/usr/bin/python3", "python3"].find((p) => p !== undefined && spawnSync(p, ["-c", "import torch"]).status === 0);
  const info = python
    ? JSON.parse(spawnSync(python, [join(here, "peers.py"), "info"], { encoding: "utf8" }).stdout)
    : { safetensors: "", torchLoad: "" };
  const files = [
    { label: "llama-1.1b-bf16", specs: llama() },
    { label: "20000-tensors", specs: many() },
  ];
  const contenders = runners(python, info);
  const results: Record<string, Record<string, { warm: number; cold: number }>> = {};

  for (const f of files) {
    const path = join(data, `${f.label}.safetensors`);
    const pt = join(data, `${f.label}.pt`);
    if (!existsSync(path)) {
      console.error(`generating ${path} …`);
      generate(path, f.specs);
    }
    if (python && !existsSync(pt)) {
      console.error(`converting to ${pt} …`);
      measure([python, join(here, "peers.py"), "convert", path, pt]);
    }
    const size = statSync(path).size;
    console.log(`\n${f.label}: ${f.specs.length} tensors, ${(size / 1e9).toFixed(2)} GB`);
    console.log(`${"".padEnd(48)} ${"warm s".padStart(8)} ${"GB/s".padStart(6)} ${"cold s".padStart(8)} ${"GB/s".padStart(6)}`);
    const runs = contenders.map((c) => ({ c, argv: c.argv(path, pt), file: c.pt ? pt : path, warm: [] as number[], opening: [] as number[], closing: [] as number[], cold: [] as number[] }));
    // One page-cache state for every warm run (reading does not change it), then rounds that run each contender
    // once, each round starting one further along: a shared machine's drift falls on all of them alike.
    for (const file of new Set(runs.map((r) => r.file))) rewarm(evict, file);
    for (const r of runs) measure(r.argv, r.c.wall); // the runtime's own caches (compiled code) warm up too
    const rounds = (n: number, each: (r: (typeof runs)[number]) => void) => {
      for (let k = 0; k < n; k++) for (let i = 0; i < runs.length; i++) each(runs[(i + k) % runs.length]!);
    };
    rounds(quick ? 3 : 7, (r) => {
      const m = measure(r.argv, r.c.wall);
      r.warm.push(m.seconds);
      if (m.open !== undefined) r.opening.push(m.open);
      if (m.close !== undefined) r.closing.push(m.close);
    });
    rounds(quick ? 1 : 5, (r) => {
      evict(r.file);
      r.cold.push(measure(r.argv, r.c.wall).seconds);
    });
    const row: Record<string, { warm: number; cold: number }> = {};
    for (const r of runs) {
      const [warm, cold, opening, closing] = [median(r.warm), median(r.cold), median(r.opening), median(r.closing)];
      row[r.c.label] = { warm, cold };
      const gbs = (s: number) => (size / 1e9 / s).toFixed(2).padStart(6);
      const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;
      const opened = opening > 0 ? `   (warm: open + header ${ms(opening)}, then close ${ms(closing)})` : "";
      console.log(`${r.c.label.padEnd(48)} ${warm.toFixed(3).padStart(8)} ${gbs(warm)} ${cold.toFixed(3).padStart(8)} ${gbs(cold)}${opened}`);
    }
    results[f.label] = row;
  }

  console.log("\nratios (targets: warm ≤ 0.80 × Python safetensors; cold ≤ 1.10 × sequential read; Bun/Deno within 15%; Node 26/Bun within 15%)");
  const r2 = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const rts = jsRuntimes();
  const names = rts.map((rt) => rt.name);
  const node = (backend: string) => rts.find((rt) => rt.name.startsWith("Node") && rt.backend === backend)?.name;
  const [nodeFfi, nodeRead] = [node("mmap"), node("read")];
  for (const [label, row] of Object.entries(results)) {
    const py = row[info.safetensors];
    const torch = row[info.torchLoad];
    const seqs = Object.entries(row).filter(([k]) => k.includes("seqread") || k.startsWith("cat "));
    const bestSeq = Math.min(...seqs.map(([, v]) => v.cold));
    for (const c of MMAP_CONTENDERS) {
      for (const rt of names) {
        const mine = row[`tensormap ${c} (${rt})`];
        const seq = row[`tensormap seqread (${rt})`];
        if (!mine) continue;
        const parts = [`${label} ${c} (${rt}):`.padEnd(48)];
        if (py) parts.push(`warm ${r2(mine.warm, py.warm)} ${info.safetensors}`);
        if (torch) parts.push(`warm ${r2(mine.warm, torch.warm)} torch.load`);
        if (seq) parts.push(`cold ${r2(mine.cold, seq.cold)} ${rt} sequential read, ${r2(mine.cold, bestSeq)} the fastest`);
        console.log(parts.join("  "));
      }
      const b = row[`tensormap ${c} (Bun)`];
      for (const other of ["Deno", nodeFfi]) {
        const o = other && row[`tensormap ${c} (${other})`];
        if (b && o) console.log(`${`${label} ${c} ${other}/Bun:`.padEnd(48)}  warm ${r2(o.warm, b.warm)}  cold ${r2(o.cold, b.cold)}`);
      }
    }
    const ffi = nodeFfi && row[`tensormap mmap (${nodeFfi})`];
    const read = nodeRead && row[`tensormap read (${nodeRead})`];
    if (ffi && read) console.log(`${`${label} ${nodeRead} read/${nodeFfi} mmap:`.padEnd(48)}  warm ${r2(read.warm, ffi.warm)}  cold ${r2(read.cold, ffi.cold)}`);
  }
  if (args.includes("--clean")) rmSync(data, { recursive: true, force: true });
}

await main();
