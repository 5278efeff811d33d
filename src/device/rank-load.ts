/**
 * Tensor-parallel loads: each rank reads only its part of every tensor ({@link planSplit}), gathered into one
 * contiguous row-major buffer. A dim-0 part is one read; a dim-1 part a read per row, the rows' pages asked for
 * ahead with exact `POSIX_FADV_WILLNEED` ranges (the mapping itself is opened `MADV_RANDOM`, so a fault reads
 * its page and no read-ahead past it). A remote file's runs are ranged GETs, runs at most the remote option
 * `gapBytes` (a page, by default) apart one GET.
 */
import { dirname, join } from "node:path";
import { POSIX_FADV_WILLNEED } from "../../ffi/types.ts";
import type { CheckpointFile } from "../checkpoint/checkpoint.ts";
import { sliceReads } from "../checkpoint/slice.ts";
import { SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import { loadLibc, type LibC } from "../io/libc.ts";
import type { ByteSource } from "../io/source.ts";
import { resolveRemoteOptions, type RemoteOptions } from "../io/remote/options.ts";
import { isRemoteUrl } from "../io/remote/url.ts";
import { readSmallFile } from "../io/small-file.ts";
import { yieldToLoop } from "./pipeline.ts";
import { fetchBesideUrl } from "./remote-config.ts";
import { launchRank } from "./ranks.ts";
import { lastAtOrBefore } from "./sorted.ts";
import type { TensorInfo } from "../format/layout.ts";
import { planSplit, splitRuns, type ModelConfig, type Split, type TensorParallelPlan } from "./tp-plan.ts";
import type { Cleanup } from "./cuda.ts";
import { DeviceTensors, type DeviceTensor } from "./tensors.ts";

/** `config.json` is a few kilobytes; this only bounds what a wrong file can cost. */
const CONFIG_CAP = 16 << 20;

export interface RankLoadOptions {
  /** This process's rank (default: the launcher's, see {@link launchRank}; 0 without one). */
  rank?: number;
  /** How many ranks share the model (default: the launcher's; 1 without one). */
  worldSize?: number;
  /** Which part of each tensor a rank holds: `"llama"`, `"gpt2"` or a custom plan. Loads whole tensors without. */
  plan?: TensorParallelPlan;
  /** The model's config (head counts); default `config.json` beside the weights (fetched, for a URL), when there is one. */
  config?: ModelConfig;
  /** For remote checkpoints: part size, parallelism, timeouts, retries, headers. */
  remote?: RemoteOptions;
}

/**
 * The rank a load is for, and the local rank that picks its GPU: the options', else the launcher's.
 *
 * @example
 * ```ts
 * rankOf({ rank: 2, worldSize: 4 }); // { rank: 2, worldSize: 4, localRank: 2 } when no launcher started this process
 * ```
 */
export function rankOf(opts: RankLoadOptions): { rank: number; worldSize: number; localRank: number } {
  const env = launchRank();
  const rank = opts.rank ?? env.rank;
  return { rank, worldSize: opts.worldSize ?? env.worldSize, localRank: env.launcher === "none" ? rank : env.localRank };
}

/** The tensors of one file a load takes. */
export interface FileNames {
  file: CheckpointFile;
  names: string[];
}

/** One tensor's part for this rank: its split, shape and byte runs (offsets within the tensor). */
export interface RankPart {
  name: string;
  info: TensorInfo;
  split: Split | null;
  shape: number[];
  runs: Array<[number, number]>;
  byteLength: number;
}

/**
 * The model config a plan reads: `opts.config`, else `config.json` beside the checkpoint at `where` (a local file
 * or index: in its folder; a URL: one GET from the URL's folder), else null where there is none. A config that is
 * there but not a JSON object is `InvalidArgument`.
 *
 * @example
 * ```ts
 * const config = await modelConfig("https://example.com/llama/model.safetensors", {}); // { num_key_value_heads: 8, … }
 * ```
 */
export async function modelConfig(where: string, opts: RankLoadOptions, commit?: string): Promise<ModelConfig | null> {
  if (opts.config) return opts.config;
  if (!isRemoteUrl(where)) return readConfig(join(dirname(where), "config.json"));
  const found = await fetchBesideUrl(where, "config.json", CONFIG_CAP, opts.remote, commit);
  return found && parseConfig(found.bytes, found.shown);
}

/**
 * This rank's part of each named tensor, file by file: planned for every tensor before any is read, so an
 * `UnevenSplit` costs no I/O. `config` is the model's ({@link modelConfig}).
 *
 * @example
 * ```ts
 * const [first] = planParts(files, await modelConfig("checkpoints/llama/model.safetensors", opts), { rank: 1, worldSize: 4, plan: "llama" });
 * console.log(first.parts[0].split);
 * ```
 */
export function planParts(files: FileNames[], config: ModelConfig | null, opts: RankLoadOptions & { plan: TensorParallelPlan }): Array<FileNames & { parts: RankPart[] }> {
  const at = rankOf(opts);
  return files.map(({ file, names }) => ({
    file,
    names,
    parts: names.map((name) => {
      const info = file.info(name);
      const split = planSplit(name, info, at, opts.plan, config);
      return { name, info, split, ...splitRuns(name, info.shape, DTYPES.get(info.dtype)!.bits, split) };
    }),
  }));
}

/**
 * Reads this rank's part of each named tensor into host memory ({@link planParts}). `owned` closes what the load
 * opened, with the tensors.
 *
 * @example
 * ```ts
 * const w = await loadSlices(files, config, { rank: 1, worldSize: 4, plan: "llama" }, "cpu requested", owned);
 * ```
 */
export async function loadSlices(
  files: FileNames[],
  config: ModelConfig | null,
  opts: RankLoadOptions & { plan: TensorParallelPlan; onProgress?: (p: { file: string; bytesDone: number; bytesTotal: number }) => void },
  reason: string,
  owned: Cleanup,
): Promise<DeviceTensors> {
  const t0 = performance.now();
  const planned = planParts(files, config, opts);
  const total = planned.reduce((a, { parts }) => a + parts.reduce((b, p) => b + p.byteLength, 0), 0);
  const { gapBytes } = resolveRemoteOptions(opts.remote);
  const ahead = await ReadAhead.open();
  const tensors = new Map<string, DeviceTensor>();
  let done = 0;
  try {
    for (const { file, parts } of planned) {
      const { source } = file;
      const entries = parts.map((p) => file.entry(p.name));
      const outs = parts.map((p) => new Uint8Array(p.byteLength));
      // Each part's runs in the file; none for a PyTorch view strided in the file, gathered whole and cut below.
      const fileRuns = parts.map((p, i): Array<[number, number]> => (entries[i]!.gather ? [] : p.runs.map(([offset, length]) => [entries[i]!.start + offset, length])));
      if (!source.zeroCopy) {
        // A copying source (positional reads, a remote file) reads the file's runs at once, runs close together as one read (one ranged GET).
        ahead.advise(source.path, fileRuns.flat());
        const reads = fileRuns.map((runs, i) => ({ runs, into: outs[i]! })).filter((p) => p.runs.length);
        await readRuns(source, reads, isRemoteUrl(source.path) ? gapBytes : PAGE);
      }
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        const whole = entries[i]!.gather?.(source);
        if (whole) {
          let filled = 0;
          for (const [offset, length] of p.runs) outs[i]!.set(whole.subarray(offset, offset + length), (filled += length) - length);
        } else if (source.zeroCopy) {
          // A mapping copies run by run, each run's pages asked for first (the mapping itself reads no further).
          ahead.advise(source.path, fileRuns[i]!);
          let filled = 0;
          for (const [offset, length] of fileRuns[i]!) source.readInto(outs[i]!.subarray(filled, (filled += length)), offset);
        }
        tensors.set(p.name, { name: p.name, dtype: p.info.dtype, shape: p.shape, fullShape: p.info.shape, split: p.split, byteLength: p.byteLength, device: "cpu", bytes: outs[i]! });
        done += p.byteLength;
        opts.onProgress?.({ file: file.path, bytesDone: done, bytesTotal: total });
        await yieldToLoop();
      }
    }
  } finally {
    ahead.close();
  }
  return new DeviceTensors({ device: "cpu", reason, tensors, cleanup: owned, bytes: total, seconds: (performance.now() - t0) / 1000 });
}

/**
 * A local file's runs at most this far apart are one positional read: a gap below a page is on pages the runs
 * touch anyway. A remote file's are the remote option `gapBytes` apart.
 */
const PAGE = 4096;

/** A part's runs in the file, in order, and the buffer they fill one after another. */
interface PartRuns {
  runs: Array<[number, number]>;
  into: Uint8Array;
}

/**
 * Reads every part's runs at once, runs at most `gapBytes` apart as one read ({@link sliceReads}; into a buffer of
 * its own, then copied out). Settles once no read is still writing; rejects with the first failure.
 */
async function readRuns(source: ByteSource, parts: PartRuns[], gapBytes: number): Promise<void> {
  // sliceReads places runs in one output, the parts one after another: where each part starts in it.
  const starts: number[] = [];
  let total = 0;
  for (const { into } of parts) {
    starts.push(total);
    total += into.byteLength;
  }
  const into = (at: number, length: number): Uint8Array => {
    const i = lastAtOrBefore(starts, at);
    return parts[i]!.into.subarray(at - starts[i]!, at - starts[i]! + length);
  };
  const reads = sliceReads({ runs: parts.flatMap((p) => p.runs) }, gapBytes).map(async ({ offset, length, pieces }) => {
    if (pieces.length === 1) return source.read(offset, length, into(pieces[0]![1], length));
    const bytes = new Uint8Array(length);
    await source.read(offset, length, bytes);
    for (const [from, to, n] of pieces) into(to, n).set(bytes.subarray(from, from + n));
  });
  const failed = (await Promise.allSettled(reads)).find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** `config.json`, or null where there is none. */
function readConfig(path: string): ModelConfig | null {
  let bytes: Uint8Array;
  try {
    bytes = readSmallFile(path, CONFIG_CAP);
  } catch (e) {
    if (e instanceof SafetensorsError && e.code === "ENOENT") return null;
    throw e;
  }
  return parseConfig(bytes, path);
}

/** A config's bytes as a JSON object; anything else is `InvalidArgument` naming `path`. */
function parseConfig(bytes: Uint8Array, path: string): ModelConfig {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new SafetensorsError("InvalidArgument", `${path} is not JSON: ${(e as Error).message.split("\n")[0]}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new SafetensorsError("InvalidArgument", `${path} is not a JSON object`);
  return value as ModelConfig;
}

/**
 * The kernel reads at most its read-ahead window per `WILLNEED` call (`max(io_pages, ra_pages)`: 128 KiB by
 * default), so longer ranges are advised in pieces of this.
 */
const ADVICE_PIECE = 128 << 10;

/**
 * Exact read-ahead: `POSIX_FADV_WILLNEED` on the pages of each run (neighbouring runs' pages merged), so the
 * kernel reads them in large requests but no page outside them, and reads that then find their pages cached
 * start no read-ahead of their own. Advice only: without libc, or when a call fails, reads fetch their pages
 * themselves, the same bytes (plus the kernel's read-ahead, for positional reads).
 *
 * @example
 * ```ts
 * const ahead = await ReadAhead.open();
 * ahead.advise("model.safetensors", [[4096, 8192]]);
 * ahead.close();
 * ```
 */
export class ReadAhead {
  #libc: LibC | null;
  #fds = new Map<string, number>();

  private constructor(libc: LibC | null) {
    this.#libc = libc;
  }

  /** With libc where there is FFI; a no-op elsewhere. */
  static async open(): Promise<ReadAhead> {
    const libc = await loadLibc();
    return new ReadAhead("unavailable" in libc ? null : libc);
  }

  advise(path: string, runs: Array<[number, number]>): void {
    const libc = this.#libc;
    // A remote file's read-ahead is its own requests.
    if (!libc || !runs.length || isRemoteUrl(path)) return;
    try {
      let fd = this.#fds.get(path);
      if (fd === undefined) this.#fds.set(path, (fd = libc.openRead(path)));
      const page = libc.pageSize;
      const advise = (from: number, to: number) => {
        for (let at = from; at < to; at += ADVICE_PIECE) libc.posixFadvise(fd, at, Math.min(ADVICE_PIECE, to - at), POSIX_FADV_WILLNEED);
      };
      let from = -1;
      let to = -1;
      for (const [offset, length] of runs) {
        const a = Math.floor(offset / page) * page;
        const b = Math.ceil((offset + length) / page) * page;
        if (a <= to) to = Math.max(to, b);
        else {
          advise(from, to);
          [from, to] = [a, b];
        }
      }
      advise(from, to);
    } catch {
      // Advice only (see above).
    }
  }

  close(): void {
    for (const fd of this.#fds.values()) this.#libc!.close(fd);
    this.#fds.clear();
  }
}
