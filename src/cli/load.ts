/**
 * `tensormap load PATH`: reads every tensor (or those `--filter` keeps) the way a program would, with a
 * progress bar and the rate, and says whether the pages were in memory before (warm) or not (cold).
 */
import { createHash } from "node:crypto";
import { loadToDevice } from "../device/load.ts";
import type { DeviceTensors } from "../device/tensors.ts";
import { rankOf, type RankLoadOptions } from "../device/rank-load.ts";
import { DTYPES } from "../format/dtypes.ts";
import { parseDevice } from "../device/spec.ts";
import { touchPages } from "../io/mmap.ts";
import type { Backend } from "../io/source.ts";
import { type Command, type Output, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, formatRate, plural, printableJson } from "./format.ts";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { withCheckpoint } from "../checkpoint/open.ts";
import { filterArgs, nameFilter } from "./glob.ts";
import { describePageCache, pageCacheJson, pageCacheState, type PageCacheState } from "./page-cache.ts";
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
 * Gets every tensor (those `keep` keeps) in file order and reads one byte per 4 KiB page of it, so mapped
 * files fault in every page and copying backends copy everything. Timed from `started` (default: now), e.g.
 * before the open.
 *
 * @example
 * ```ts
 * const { bytes, seconds } = touchAll(file, process.stderr);
 * ```
 */
export function touchAll(file: Checkpoint, progressTo: Output, label = "load", started = performance.now(), keep?: (name: string) => boolean): LoadResult {
  // A sharded checkpoint opens its shards here.
  const names = keep ? file.offsetKeys().filter(keep) : file.offsetKeys();
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
 * The totals line `load` prints: count, size, time and rate, then what the rate measured (the page cache
 * state before the load, when given) and where.
 *
 * @example
 * ```ts
 * const cache = await pageCacheState("model.safetensors");
 * loadReport(touchAll(file, process.stderr), `backend ${file.backend}`, cache);
 * // "17 tensors, 20.7 kB in 1.20 ms: 17.3 MB/s (warm: pages were in memory) (backend mmap)"
 * ```
 */
export function loadReport(r: Pick<LoadResult, "tensors" | "bytes" | "seconds">, where: string, cache?: PageCacheState): string {
  const measured = cache ? ` (${describePageCache(cache)})` : "";
  return `${formatCount(r.tensors)} ${plural(r.tensors, "tensor")}, ${formatBytes(r.bytes)} in ${formatDuration(r.seconds)}: ${formatRate(r.bytes, r.seconds)}${measured} (${where})`;
}

/** What `load --json` prints for a whole load (cpu or device). */
interface LoadJson {
  path: string;
  device: string;
  /** cpu loads: the backend that read the file; device loads choose their own reads (null). */
  backend: string | null;
  tensors: number;
  bytes: number;
  seconds: number;
  /** cpu loads: seconds until the first tensor was read (the open); null for device loads. */
  open_seconds: number | null;
  bytes_per_second: number | null;
  page_cache: ReturnType<typeof pageCacheJson>;
  /** Why this device (device loads), else null. */
  reason: string | null;
  /** Per dtype: how many tensors and bytes. */
  dtypes: Record<string, { tensors: number; bytes: number }>;
}

/** Tensors and bytes per dtype, in the order the dtypes first appear. */
function perDtype(tensors: Iterable<{ dtype: string; byteLength: number }>): LoadJson["dtypes"] {
  const out: LoadJson["dtypes"] = Object.create(null);
  for (const t of tensors) {
    const d = (out[t.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += t.byteLength;
  }
  return out;
}

const rate = (bytes: number, seconds: number) => (seconds > 0 ? Math.round(bytes / seconds) : null);

/** How {@link loadDevice} loads: the device, and optionally a rank's parts, a subset of names, a JSON result. */
export interface DeviceLoadRequest {
  device: string;
  hostRegister?: boolean;
  ranks?: RankLoadOptions;
  /** Only these tensors (`--filter`). */
  keep?: (name: string) => boolean;
  /** Print the JSON document ({@link rankJson} with ranks) instead of the lines. */
  json?: boolean;
}

/**
 * Loads onto a device through the CUDA pipeline (or its CPU fallback under `auto`), with the bar fed by its
 * progress; returns the totals line (with the page cache state before the load) and the line saying which
 * device and why. With `ranks`, this rank's parts only, and a line saying how much of the checkpoint that is
 * (or, with `json`, the {@link rankJson} document).
 *
 * @example
 * ```ts
 * console.log(await loadDevice("checkpoints/gpt2", { device: "auto" }, { stdout: process.stdout, stderr: process.stderr }));
 * console.log(await loadDevice("checkpoints/gpt2", { device: "cpu", ranks: { rank: 1, worldSize: 2, plan: "gpt2" } }, io));
 * ```
 */
export async function loadDevice(path: string, request: DeviceLoadRequest, io: Parameters<Command["run"]>[1]): Promise<string> {
  const { device, ranks, keep } = request;
  const cache = await pageCacheState(path);
  let bar: Progress | undefined;
  const started = performance.now();
  const names = keep ? await withCheckpoint(path, {}, (file) => file.offsetKeys().filter(keep)) : undefined;
  using tensors = await loadToDevice(path, {
    ...ranks,
    names,
    device,
    hostRegister: request.hostRegister === true,
    onProgress: (p) => {
      bar ??= new Progress(io.stderr, `load → ${device}`, p.bytesTotal, started);
      bar.add(p.bytesDone - bar.done);
    },
  });
  // From before the open, as for cpu loads.
  const seconds = bar?.finish() ?? (performance.now() - started) / 1000;
  if (ranks && request.json) return printableJson(rankJson(tensors, rankOf(ranks), ranks.plan as string, seconds));
  if (request.json) {
    const all = [...tensors].map(([, t]) => t);
    const doc: LoadJson = {
      path, device: tensors.device, backend: null, tensors: tensors.size, bytes: tensors.bytes, seconds, open_seconds: null,
      bytes_per_second: rate(tensors.bytes, seconds), page_cache: pageCacheJson(cache), reason: tensors.reason, dtypes: perDtype(all),
    };
    return printableJson(doc);
  }
  const lines = [loadReport({ tensors: tensors.size, bytes: tensors.bytes, seconds }, `device ${tensors.device}`, cache), tensors.reason];
  if (ranks) {
    const all = [...tensors].map(([, t]) => t);
    const whole = all.reduce((a, t) => a + (t.fullShape!.reduce((n, d) => n * d, 1) * DTYPES.get(t.dtype)!.bits) / 8, 0);
    const split = all.filter((t) => t.split).length;
    const { rank, worldSize } = rankOf(ranks);
    lines.push(`rank ${rank} of ${worldSize} (plan ${ranks.plan}): ${formatCount(split)} ${plural(split, "tensor")} split, ${formatCount(all.length - split)} whole; ${formatBytes(tensors.bytes)} of ${formatBytes(whole)}`);
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
  summary: "read every tensor (or load it onto a GPU) and report the throughput, warm or cold",
  usage: "load PATH [--device cpu|auto|cuda|cuda:N] [--backend auto|mmap|read] [--host-register] [--filter GLOB]... [--json] [--plan llama|gpt2 --rank R --world-size N]",
  help: [
    "Opens PATH (a safetensors or PyTorch .bin/.pt file, or a sharded checkpoint's folder or index) and",
    "reads every tensor in file order, touching each 4 KiB page, with a progress bar on stderr; then prints",
    "bytes, time and GB/s (timed from before the open, which is also shown alone), and what that measured:",
    "warm (the file's pages were in memory before: a memory rate), cold (read from disk), partly warm (N%),",
    "or unknown (no FFI, a remote file). With --device, streams the tensors into GPU memory through the",
    "CUDA runtime instead; --backend applies to cpu loads only.",
    "",
    "options:",
    "  --device D       cpu (default: touch the host pages), auto (the GPU when usable, else cpu, and why),",
    "                   cuda or cuda:N (an error if that GPU cannot be used)",
    "  --backend B      auto (default: mmap where FFI is available), mmap, or read (positional reads)",
    "  --host-register  pin the file's mapping and let the copy engine read its pages (CUDA only)",
    "  --filter GLOB    only the tensors whose names match GLOB (* any run of characters, dots included;",
    "                   ? one character); repeatable: any GLOB matches; !GLOB leaves names out",
    "  --json           print {path, device, backend, tensors, bytes, seconds, open_seconds,",
    "                   bytes_per_second, page_cache: {state: warm|cold|partly warm|unknown,",
    "                   resident_fraction}, reason, dtypes: {DTYPE: {tensors, bytes}}} instead of the totals;",
    "                   with --plan: {rank, world_size, plan, device, bytes, seconds, tensors: [{name, dtype,",
    "                   shape, full_shape, split, byte_length, sha256}]}",
    "  --plan P         tensor parallelism: read only this rank's part of each tensor, by llama or gpt2 rules",
    "                   (head counts from config.json beside the weights)",
    "  --rank R         this rank (default: the launcher's RANK, OMPI_COMM_WORLD_RANK, PMI_RANK or",
    "                   SLURM_PROCID; else 0)",
    "  --world-size N   how many ranks share the model (default: the launcher's; else 1)",
  ].join("\n"),
  options: {
    backend: { type: "string" },
    device: { type: "string" },
    "host-register": { type: "boolean" },
    filter: { type: "string", multiple: true },
    plan: { type: "string" },
    rank: { type: "string" },
    "world-size": { type: "string" },
    json: { type: "boolean" },
  },
  progress: true,
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
    const keep = nameFilter(filterArgs(values.filter));
    const json = values.json === true;
    const ranks = rankOptions(values);
    if (ranks) {
      if (values.backend !== undefined) throw new UsageError("--backend applies to whole loads; --plan reads its parts as it needs");
      io.stdout.write((await loadDevice(path, { device, hostRegister: values["host-register"] === true, ranks, keep, json }, io)) + "\n");
      return 0;
    }
    if (device !== "cpu") {
      if (values.backend !== undefined) throw new UsageError("--backend applies to --device cpu; device loads choose their own reads");
      io.stdout.write((await loadDevice(path, { device, hostRegister: values["host-register"] === true, keep, json }, io)) + "\n");
      return 0;
    }
    if (values["host-register"]) throw new UsageError("--host-register needs a CUDA --device");
    // Before the open, which starts mapping the pages in.
    const cache = await pageCacheState(path);
    // Timed from before the open, as a program loading the checkpoint would see it; the open is also shown alone.
    const started = performance.now();
    // populate: the kernel maps each file's pages on its own thread while this one walks the tensors (not with
    // --filter: it would read the tensors left out too).
    const report = await withCheckpoint(path, { backend, populate: !keep }, async (file) => {
      const kept = keep ? file.offsetKeys().filter(keep) : undefined;
      // A copying source (a remote one; a no-op for local reads) serves only the bytes it has fetched.
      if (file.backend === "read") await file.prefetch(kept);
      const r = touchAll(file, io.stderr, "load", started, keep);
      if (!json) return loadReport(r, `backend ${file.backend}, open ${formatDuration(r.ready)}`, cache);
      const names = kept ?? file.offsetKeys();
      const doc: LoadJson = {
        path, device: "cpu", backend: file.backend, tensors: r.tensors, bytes: r.bytes, seconds: r.seconds, open_seconds: r.ready,
        bytes_per_second: rate(r.bytes, r.seconds), page_cache: pageCacheJson(cache), reason: null, dtypes: perDtype(names.map((n) => file.info(n))),
      };
      return printableJson(doc);
    });
    io.stdout.write(report + "\n");
    return 0;
  },
};

/** `--plan`, `--rank` and `--world-size`, checked; undefined when none is given. */
function rankOptions(values: Record<string, unknown>): (RankLoadOptions & { plan: (typeof PLANS)[number] }) | undefined {
  const { plan, rank, "world-size": worldSize } = values as Record<string, string | undefined>;
  if (plan === undefined && rank === undefined && worldSize === undefined) return undefined;
  if (plan === undefined) throw new UsageError("--rank and --world-size need --plan llama|gpt2");
  if (!(PLANS as readonly string[]).includes(plan)) throw new UsageError(`--plan wants one of ${PLANS.join(", ")}, got '${plan}'`);
  const int = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    if (!/^(0|[1-9][0-9]{0,8})$/.test(v)) throw new UsageError(`${flag} wants a non-negative integer, got '${v}'`);
    return Number(v);
  };
  return { plan: plan as (typeof PLANS)[number], rank: int(rank, "--rank"), worldSize: int(worldSize, "--world-size") };
}
