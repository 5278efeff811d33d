/**
 * Tensor-parallel loads: each rank reads only its part of every tensor ({@link planSplit}), gathered into one
 * contiguous row-major buffer. A dim-0 part is one read; a dim-1 part a read per row, the rows' pages asked for
 * ahead with exact `POSIX_FADV_WILLNEED` ranges (the mapping itself is opened `MADV_RANDOM`, so a fault reads
 * its page and no read-ahead past it).
 */
import { join } from "node:path";
import { POSIX_FADV_WILLNEED } from "../../ffi/types.ts";
import type { CheckpointFile } from "../checkpoint/checkpoint.ts";
import { SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import { loadLibc, type LibC } from "../io/libc.ts";
import { readSmallFile } from "../io/small-file.ts";
import { yieldToLoop } from "./pipeline.ts";
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
  /** The model's config (head counts); default `config.json` beside the weights, when there is one. */
  config?: ModelConfig;
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
 * This rank's part of each named tensor, file by file: planned for every tensor before any is read, so an
 * `UnevenSplit` costs no I/O. The config is `opts.config`, else `config.json` in `folder` when there is one.
 *
 * @example
 * ```ts
 * const [first] = planParts(files, "checkpoints/llama", { rank: 1, worldSize: 4, plan: "llama" });
 * console.log(first.parts[0].split);
 * ```
 */
export function planParts(files: FileNames[], folder: string, opts: RankLoadOptions & { plan: TensorParallelPlan }): Array<FileNames & { parts: RankPart[] }> {
  const at = rankOf(opts);
  const config = opts.config ?? readConfig(join(folder, "config.json"));
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
 * const w = await loadSlices(files, "checkpoints/llama", { rank: 1, worldSize: 4, plan: "llama" }, "cpu requested", owned);
 * ```
 */
export async function loadSlices(
  files: FileNames[],
  folder: string,
  opts: RankLoadOptions & { plan: TensorParallelPlan; onProgress?: (p: { file: string; bytesDone: number; bytesTotal: number }) => void },
  reason: string,
  owned: Cleanup,
): Promise<DeviceTensors> {
  const t0 = performance.now();
  const parts = planParts(files, folder, opts).flatMap(({ file, parts }) => parts.map((p) => ({ ...p, file })));
  const total = parts.reduce((a, p) => a + p.byteLength, 0);
  const ahead = await ReadAhead.open();
  const tensors = new Map<string, DeviceTensor>();
  let done = 0;
  try {
    for (const p of parts) {
      const e = p.file.entry(p.name);
      // A PyTorch view strided in the file is gathered whole first; its parts are cut from that.
      const whole = e.gather?.(p.file.source);
      if (!whole) ahead.advise(p.file.source.path, p.runs.map(([offset, length]) => [e.start + offset, length]));
      const out = new Uint8Array(p.byteLength);
      let filled = 0;
      for (const [offset, length] of p.runs) {
        const dst = out.subarray(filled, filled + length);
        if (whole) dst.set(whole.subarray(offset, offset + length));
        else p.file.source.readInto(dst, e.start + offset);
        filled += length;
      }
      tensors.set(p.name, { name: p.name, dtype: p.info.dtype, shape: p.shape, fullShape: p.info.shape, split: p.split, byteLength: p.byteLength, device: "cpu", bytes: out });
      done += p.byteLength;
      opts.onProgress?.({ file: p.file.path, bytesDone: done, bytesTotal: total });
      await yieldToLoop();
    }
  } finally {
    ahead.close();
  }
  return new DeviceTensors({ device: "cpu", reason, tensors, cleanup: owned, bytes: total, seconds: (performance.now() - t0) / 1000 });
}

/** `config.json`, or null where there is none; one that is there but not a JSON object is `InvalidArgument`. */
function readConfig(path: string): ModelConfig | null {
  let bytes: Uint8Array;
  try {
    bytes = readSmallFile(path, CONFIG_CAP);
  } catch (e) {
    if (e instanceof SafetensorsError && e.code === "ENOENT") return null;
    throw e;
  }
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
    if (!libc || !runs.length) return;
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
