/**
 * Tensor-parallel loads: each rank reads only its part of every tensor ({@link planSplit}), gathered into one
 * contiguous row-major buffer. A dim-0 part is one read; a dim-1 part a read per row: positional reads into the
 * destination through a descriptor with read-ahead off (`POSIX_FADV_RANDOM`), the rows' pages asked for ahead
 * with exact `POSIX_FADV_WILLNEED` ranges, in batches. A remote file's runs are ranged GETs, runs at most the remote option
 * `gapBytes` (a page, by default) apart one GET.
 */
import { dirname, join } from "node:path";
import { POSIX_FADV_WILLNEED } from "../../ffi/types.ts";
import type { CheckpointFile } from "../checkpoint/checkpoint.ts";
import { sliceReads, type SliceRead } from "../checkpoint/slice.ts";
import { SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import { loadLibc, type LibC } from "../io/libc.ts";
import { Descriptor } from "../io/descriptor.ts";
import { defaultThreads, libcReadAt, MIN_PART, readRange, type ReadTarget } from "../io/positional-read.ts";
import type { ByteSource } from "../io/source.ts";
import { resolveRemoteOptions, type RemoteOptions } from "../io/remote/options.ts";
import { isRemoteUrl } from "../io/remote/url.ts";
import { readSmallFile } from "../io/small-file.ts";
import { yieldToLoop } from "./pipeline.ts";
import { fetchBesideUrl } from "./remote-config.ts";
import { launchRank } from "./ranks.ts";
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
  opts: RankLoadOptions & { plan: TensorParallelPlan; threads?: number; onProgress?: (p: { file: string; bytesDone: number; bytesTotal: number }) => void },
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
      // Every part's runs at once, runs close together as one read (one ranged GET, remote).
      const reads = fileRuns.map((runs, i) => ({ runs, into: outs[i]! })).filter((p) => p.runs.length);
      if (reads.length) await readRuns(source, reads, ahead, isRemoteUrl(source.path) ? gapBytes : PAGE, opts.threads);
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        const whole = entries[i]!.gather?.(source);
        if (whole) {
          let filled = 0;
          for (const [offset, length] of p.runs) outs[i]!.set(whole.subarray(offset, offset + length), (filled += length) - length);
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

/** A local file's reads go in batches of about this many bytes or {@link BATCH_READS} reads, the loop turning between. */
const BATCH_BYTES = 8 << 20;
const BATCH_READS = 2048;
/** How far past the batch being read a local file's pages are asked for (`WILLNEED`), so the disk stays busy. */
const AHEAD_BYTES = 32 << 20;

/**
 * Reads every part's runs, runs at most `gapBytes` apart as one read ({@link sliceReads}; into a buffer of its
 * own, then copied out), each straight into its destination by a positional read. A local file where there is
 * libc is read through the descriptor {@link ReadAhead} keeps (kernel read-ahead off, each batch's pages asked
 * for exactly ahead of it), in batches; another source through its own `read`, all at once (a remote file's
 * ranged GETs in parallel). Settles once no read is still writing; rejects with the first failure.
 */
async function readRuns(source: ByteSource, parts: PartRuns[], ahead: ReadAhead, gapBytes: number, threads?: number): Promise<void> {
  // sliceReads places runs in one output, the parts one after another: where each part starts in it.
  const starts: number[] = [];
  let total = 0;
  for (const { into } of parts) {
    starts.push(total);
    total += into.byteLength;
  }
  const into = (at: number, length: number): Uint8Array => {
    let lo = 0;
    for (let hi = starts.length; hi - lo > 1; ) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= at) lo = mid;
      else hi = mid;
    }
    return parts[lo]!.into.subarray(at - starts[lo]!, at - starts[lo]! + length);
  };
  const local = await ahead.reader(source, threads);
  const read = local?.read ?? ((offset: number, length: number, dst: Uint8Array) => source.read(offset, length, dst));
  const readOne = async ({ offset, length, pieces }: SliceRead): Promise<void> => {
    if (pieces.length === 1) return read(offset, length, into(pieces[0]![1], length));
    const bytes = new Uint8Array(length);
    await read(offset, length, bytes);
    for (const [from, to, n] of pieces) into(to, n).set(bytes.subarray(from, from + n));
  };
  const reads = sliceReads({ runs: parts.flatMap((p) => p.runs) }, gapBytes);
  if (!local) return settle(reads.map(readOne));
  let advised = 0;
  let advisedEnd = 0;
  for (let i = 0, readBytes = 0; i < reads.length; ) {
    for (; advised < reads.length && advisedEnd < readBytes + BATCH_BYTES + AHEAD_BYTES; advised++) {
      local.advise(reads[advised]!);
      advisedEnd += reads[advised]!.length;
    }
    const batch: Array<Promise<void>> = [];
    for (let bytes = 0; i < reads.length && bytes < BATCH_BYTES && batch.length < BATCH_READS; i++) {
      bytes += reads[i]!.length;
      readBytes += reads[i]!.length;
      batch.push(readOne(reads[i]!));
    }
    await settle(batch);
    await yieldToLoop();
  }
  // The descriptor read is the path's: the file the source opened must not have changed since.
  await source.read(0, 0, new Uint8Array(0));
}

/** Settles once every read has; rejects with the first failure. */
async function settle(reads: Array<Promise<void>>): Promise<void> {
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

/** `posix_fadvise` advice: no read-ahead on the descriptor (Linux's value). */
const POSIX_FADV_RANDOM = 1;

/** Positional reads of a local file through a descriptor with the kernel's read-ahead off, and exact advice. */
interface LocalReads {
  /** `POSIX_FADV_WILLNEED` on the pages of one read. */
  advise(read: { offset: number; length: number }): void;
  /** Reads `[offset, offset + length)` into `into`: a small read on this thread, a large one on several. */
  read(offset: number, length: number, into: Uint8Array): Promise<void>;
}

/**
 * Exact read-ahead: `POSIX_FADV_WILLNEED` on the pages of each run (neighbouring runs' pages merged), so the
 * kernel reads them in large requests but no page outside them, and reads that then find their pages cached
 * start no read-ahead of their own. The descriptor it opens has the kernel's read-ahead off
 * (`POSIX_FADV_RANDOM`), so reads through it ({@link ReadAhead.reader}) that miss the cache read only their
 * pages too. Advice only: without libc, or when a call fails, reads fetch their pages themselves, the same
 * bytes (plus the kernel's read-ahead, for reads through another descriptor).
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
  #files = new Map<string, Descriptor>();
  /** Per path: whether its descriptor opened the same file as the source read through it. */
  #same = new Map<string, boolean>();

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
      const fd = this.#file(libc, path).fd;
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

  /**
   * Reads of a local `source` through this descriptor, up to `threads` at once for a large read; null for a
   * remote file, without libc, or where the path no longer names the file `source` opened (same size, same
   * first page): its own `read` then. The caller checks the source's identity once the reads are over.
   */
  async reader(source: ByteSource, threads = defaultThreads()): Promise<LocalReads | null> {
    const libc = this.#libc;
    if (!libc || isRemoteUrl(source.path)) return null;
    let file: Descriptor;
    try {
      file = this.#file(libc, source.path);
    } catch {
      return null;
    }
    const one: ReadTarget = { path: source.path, size: source.size, threads: 1, readAt: libcReadAt(libc, file, 1), rawAddresses: true };
    const many: ReadTarget = { ...one, threads: Math.max(1, Math.floor(threads)), readAt: libcReadAt(libc, file, Math.max(1, Math.floor(threads))) };
    if (!this.#same.has(source.path)) this.#same.set(source.path, await sameFile(libc, file.fd, source, one));
    if (!this.#same.get(source.path)) return null;
    return {
      advise: ({ offset, length }) => this.advise(source.path, [[offset, length]]),
      read: (offset, length, into) => readRange(length >= MIN_PART ? many : one, offset, length, into),
    };
  }

  close(): void {
    for (const file of this.#files.values()) file.close();
    this.#files.clear();
  }

  /** The path's descriptor, opened on first use with read-ahead off. */
  #file(libc: LibC, path: string): Descriptor {
    let file = this.#files.get(path);
    if (!file) {
      file = new Descriptor(path, libc.openRead(path), (fd) => libc.close(fd));
      this.#files.set(path, file);
      // Advice: where it fails, misses read ahead as usual.
      libc.posixFadvise(file.fd, 0, 0, POSIX_FADV_RANDOM);
    }
    return file;
  }
}

/** Whether `fd` is the file `source` reads: its size and first page (a file renamed over the path differs there). */
async function sameFile(libc: LibC, fd: number, source: ByteSource, target: ReadTarget): Promise<boolean> {
  if (libc.fileSize(fd) !== source.size) return false;
  const n = Math.min(libc.pageSize, source.size);
  const mine = new Uint8Array(n);
  await readRange(target, 0, n, mine);
  return Buffer.from(mine).equals(Buffer.from(source.bytes(0, n)));
}
