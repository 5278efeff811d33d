/** `tensormap load PATH`: reads every tensor the way a program would, with a progress bar and the rate. */
import { createHash } from "node:crypto";
import { loadToDevice } from "../device/load.ts";
import type { DeviceTensors } from "../device/tensors.ts";
import { rankOf, type RankLoadOptions } from "../device/rank-load.ts";
import { DTYPES } from "../format/dtypes.ts";
import { parseDevice } from "../device/spec.ts";
import { touchPages } from "../io/mmap.ts";
import type { Backend } from "../io/source.ts";
import { type Command, type Output, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, formatRate, printableJson } from "./format.ts";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { withCheckpoint } from "../checkpoint/open.ts";
import { Progress } from "./progress.ts";

const BACKENDS = ["auto", "mmap", "read"] as const;
const PLANS = ["llama", "gpt2"] as const;

export interface LoadResult {
  tensors: number;
  bytes: number;
  seconds: number;
  /** Sum of the touched bytes: keeps the reads observable, and equal runs give equal sums. */
  checksum: number;
  /** Seconds until the first tensor was read: the open, every shard's included. */
  ready: number;
}

/**
 * Gets every tensor in file order and reads one byte per 4 KiB page of it, so mapped files fault in
 * every page and copying backends copy everything. Timed from `started` (default: now), e.g. before the open.
 *
 * @example
 * ```ts
 * const { bytes, seconds } = touchAll(file, process.stderr);
 * ```
 */
export function touchAll(file: Checkpoint, progressTo: Output, label = "load", started = performance.now()): LoadResult {
  // A sharded checkpoint opens its shards here.
  const names = file.offsetKeys();
  const total = names.reduce((n, name) => n + file.info(name).byteLength, 0);
  const bar = new Progress(progressTo, label, total, started);
  const ready = bar.elapsed;
  let checksum = 0;
  for (const name of names) {
    // In pieces: a tensor may be larger than one view (4 GiB under Bun's mmap).
    for (const piece of file.chunks(name)) {
      checksum += touchPages(piece);
      bar.add(piece.byteLength);
    }
  }
  return { tensors: names.length, bytes: total, seconds: bar.finish(), checksum, ready };
}

/**
 * The totals line `load` prints.
 *
 * @example
 * ```ts
 * loadReport(touchAll(file, process.stderr), `backend ${file.backend}`);
 * ```
 */
export function loadReport(r: Pick<LoadResult, "tensors" | "bytes" | "seconds">, where: string): string {
  return `${formatCount(r.tensors)} tensors, ${formatBytes(r.bytes)} in ${formatDuration(r.seconds)}: ${formatRate(r.bytes, r.seconds)} (${where})`;
}

/**
 * Loads onto a device through the CUDA pipeline (or its CPU fallback under `auto`), with the bar fed by its
 * progress; returns the totals line and the line saying which device and why. With `ranks`, this rank's parts
 * only, and a line saying how much of the checkpoint that is (or, with `json`, the {@link rankJson} document).
 *
 * @example
 * ```ts
 * console.log(await loadDevice("checkpoints/gpt2", "auto", false, { stdout: process.stdout, stderr: process.stderr }));
 * console.log(await loadDevice("checkpoints/gpt2", "cpu", false, io, { rank: 1, worldSize: 2, plan: "gpt2" }));
 * ```
 */
export async function loadDevice(
  path: string,
  device: string,
  hostRegister: boolean,
  io: Parameters<Command["run"]>[1],
  ranks?: RankLoadOptions & { json?: boolean },
): Promise<string> {
  let bar: Progress | undefined;
  const started = performance.now();
  using tensors = await loadToDevice(path, {
    ...ranks,
    device,
    hostRegister,
    onProgress: (p) => {
      bar ??= new Progress(io.stderr, `load → ${device}`, p.bytesTotal, started);
      bar.add(p.bytesDone - bar.done);
    },
  });
  // From before the open, as for cpu loads.
  const seconds = bar?.finish() ?? (performance.now() - started) / 1000;
  if (ranks?.json) return printableJson(rankJson(tensors, rankOf(ranks), ranks.plan as string, seconds));
  const lines = [loadReport({ tensors: tensors.size, bytes: tensors.bytes, seconds }, `device ${tensors.device}`), tensors.reason];
  if (ranks) {
    const all = [...tensors].map(([, t]) => t);
    const whole = all.reduce((a, t) => a + (t.fullShape!.reduce((n, d) => n * d, 1) * DTYPES.get(t.dtype)!.bits) / 8, 0);
    const split = all.filter((t) => t.split).length;
    const { rank, worldSize } = rankOf(ranks);
    lines.push(`rank ${rank} of ${worldSize} (plan ${ranks.plan}): ${formatCount(split)} tensors split, ${formatCount(all.length - split)} whole; ${formatBytes(tensors.bytes)} of ${formatBytes(whole)}`);
  }
  return lines.join("\n");
}

/**
 * What `load --plan … --json` prints: this rank, and each tensor's part (shape, full shape, split, bytes, and the
 * sha256 of the part's bytes, copied back from the device on CUDA), so that ranks started by a launcher can be
 * checked against the whole tensors.
 *
 * @example
 * ```ts
 * printableJson(rankJson(tensors, { rank: 1, worldSize: 2 }, "gpt2", 0.02));
 * ```
 */
export function rankJson(tensors: DeviceTensors, at: { rank: number; worldSize: number }, plan: string, seconds: number) {
  return {
    rank: at.rank,
    world_size: at.worldSize,
    plan,
    device: tensors.device,
    bytes: tensors.bytes,
    seconds,
    tensors: tensors.keys().map((name) => {
      const t = tensors.get(name);
      return { name, dtype: t.dtype, shape: t.shape, full_shape: t.fullShape, split: t.split, byte_length: t.byteLength, sha256: createHash("sha256").update(tensors.toHost(name)).digest("hex") };
    }),
  };
}

export const load: Command = {
  name: "load",
  summary: "read every tensor (or load it onto a GPU) and report the throughput",
  usage: "load PATH [--device cpu|auto|cuda|cuda:N] [--backend auto|mmap|read] [--host-register] [--plan llama|gpt2 --rank R --world-size N [--json]]",
  help: [
    "Opens PATH (a safetensors or PyTorch .bin/.pt file, or a sharded checkpoint's folder or index) and",
    "reads every tensor in file order, touching each 4 KiB page, with a progress bar on stderr; then prints",
    "bytes, time and GB/s (timed from before the open, which is also shown alone). With --device, streams",
    "the tensors into GPU memory through the CUDA runtime instead; --backend applies to cpu loads only.",
    "",
    "options:",
    "  --device D       cpu (default: touch the host pages), auto (the GPU when usable, else cpu, and why),",
    "                   cuda or cuda:N (an error if that GPU cannot be used)",
    "  --backend B      auto (default: mmap where FFI is available), mmap, or read (positional reads)",
    "  --host-register  pin the file's mapping and let the copy engine read its pages (CUDA only)",
    "  --plan P         tensor parallelism: read only this rank's part of each tensor, by llama or gpt2 rules",
    "                   (head counts from config.json beside the weights)",
    "  --rank R         this rank (default: the launcher's RANK, OMPI_COMM_WORLD_RANK, PMI_RANK or",
    "                   SLURM_PROCID; else 0)",
    "  --world-size N   how many ranks share the model (default: the launcher's; else 1)",
    "  --json           with --plan: print {rank, world_size, plan, device, bytes, seconds, tensors: [{name,",
    "                   dtype, shape, full_shape, split, byte_length, sha256}]} instead of the totals",
  ].join("\n"),
  options: {
    backend: { type: "string" },
    device: { type: "string" },
    "host-register": { type: "boolean" },
    plan: { type: "string" },
    rank: { type: "string" },
    "world-size": { type: "string" },
    json: { type: "boolean" },
  },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals }, io) {
    const backend = (values.backend ?? "auto") as Backend | "auto";
    if (!BACKENDS.includes(backend)) throw new UsageError(`--backend wants one of ${BACKENDS.join(", ")}, got '${backend}'`);
    const device = (values.device ?? "cpu") as string;
    try {
      parseDevice(device);
    } catch (e) {
      throw new UsageError(`--device: ${(e as Error).message}`);
    }
    const path = positionals[0]!;
    const ranks = rankOptions(values);
    if (values.json && !ranks) throw new UsageError("--json needs --plan (a whole load prints its totals)");
    if (ranks) {
      if (values.backend !== undefined) throw new UsageError("--backend applies to whole loads; --plan reads its parts as it needs");
      io.stdout.write((await loadDevice(path, device, values["host-register"] === true, io, ranks)) + "\n");
      return 0;
    }
    if (device !== "cpu") {
      if (values.backend !== undefined) throw new UsageError("--backend applies to --device cpu; device loads choose their own reads");
      io.stdout.write((await loadDevice(path, device, values["host-register"] === true, io)) + "\n");
      return 0;
    }
    if (values["host-register"]) throw new UsageError("--host-register needs a CUDA --device");
    // Timed from before the open, as a program loading the checkpoint would see it; the open is also shown alone.
    const started = performance.now();
    // populate: the kernel maps each file's pages on its own thread while this one walks the tensors.
    const report = await withCheckpoint(path, { backend, populate: true }, async (file) => {
      // A copying source (a remote one; a no-op for local reads) serves only the bytes it has fetched.
      if (file.backend === "read") await file.prefetch();
      const r = touchAll(file, io.stderr, "load", started);
      return loadReport(r, `backend ${file.backend}, open ${formatDuration(r.ready)}`);
    });
    io.stdout.write(report + "\n");
    return 0;
  },
};

/** `--plan`, `--rank` and `--world-size`, checked; undefined when none is given. */
function rankOptions(values: Record<string, unknown>): (RankLoadOptions & { plan: (typeof PLANS)[number]; json: boolean }) | undefined {
  const { plan, rank, "world-size": worldSize } = values as Record<string, string | undefined>;
  if (plan === undefined && rank === undefined && worldSize === undefined) return undefined;
  if (plan === undefined) throw new UsageError("--rank and --world-size need --plan llama|gpt2");
  if (!(PLANS as readonly string[]).includes(plan)) throw new UsageError(`--plan wants one of ${PLANS.join(", ")}, got '${plan}'`);
  const int = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    if (!/^(0|[1-9][0-9]{0,8})$/.test(v)) throw new UsageError(`${flag} wants a non-negative integer, got '${v}'`);
    return Number(v);
  };
  return { plan: plan as (typeof PLANS)[number], rank: int(rank, "--rank"), worldSize: int(worldSize, "--world-size"), json: values.json === true };
}
