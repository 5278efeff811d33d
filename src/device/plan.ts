/**
 * Pure planning for the device pipeline: where each tensor lands in device memory, how the file is cut into
 * ring-sized chunks, and what a pinned mapping must cover. No I/O,
 * so every rule is testable anywhere.
 */
import { SafetensorsError } from "../errors.ts";
import type { TensorEntry } from "../format/layout.ts";

/** Device allocations are aligned like `cudaMalloc`'s own (256 bytes), so any tensor suits vectorized kernels. */
const DEVICE_ALIGN = 256;

/** A tensor's bytes in the file: absolute start and length. */
export type Extent = Pick<TensorEntry, "start" | "byteLength">;

/**
 * Packs tensors (in the given order) into one allocation, each at a multiple of `align`.
 *
 * @example
 * ```ts
 * layoutDevice([10, 0, 300]); // { offsets: [0, 256, 256], total: 556 }
 * ```
 */
export function layoutDevice(sizes: number[], align = DEVICE_ALIGN): { offsets: number[]; total: number } {
  const offsets: number[] = [];
  let end = 0;
  for (const size of sizes) {
    const at = Math.ceil(end / align) * align;
    offsets.push(at);
    end = at + size;
  }
  return { offsets, total: end };
}

/** Bytes `[chunkOffset, +length)` of a chunk belong to tensor `tensor` at `tensorOffset`. */
export interface Piece {
  tensor: number;
  tensorOffset: number;
  chunkOffset: number;
  length: number;
}

/** One ring slot's worth of contiguous file bytes, and which tensors they feed. */
export interface Chunk {
  fileOffset: number;
  length: number;
  pieces: Piece[];
}

/**
 * Cuts the tensors' file bytes into chunks of at most `chunkBytes`, in file order. Tensors that touch in the
 * file share chunks (one read feeds several small tensors); a tensor larger than a chunk spans several.
 * Zero-size tensors get no pieces. Chunk `i` goes through ring slot `i % slots`.
 *
 * @example
 * ```ts
 * planChunks([{ start: 8, byteLength: 6 }, { start: 14, byteLength: 2 }], 4);
 * // [{ fileOffset: 8, length: 4, pieces: [t0 0..4] }, { fileOffset: 12, length: 4, pieces: [t0 4..6, t1 0..2] }]
 * ```
 */
export function planChunks(tensors: Extent[], chunkBytes: number): Chunk[] {
  if (!(chunkBytes >= 1)) throw new RangeError(`chunk size must be positive, got ${chunkBytes}`);
  const order = tensors.map((_, i) => i).filter((i) => tensors[i]!.byteLength > 0);
  order.sort((a, b) => tensors[a]!.start - tensors[b]!.start);
  const chunks: Chunk[] = [];
  let cur: Chunk | undefined;
  for (const i of order) {
    const t = tensors[i]!;
    let done = 0;
    while (done < t.byteLength) {
      const at = t.start + done;
      if (!cur || cur.length === chunkBytes || cur.fileOffset + cur.length !== at) {
        cur = { fileOffset: at, length: 0, pieces: [] };
        chunks.push(cur);
      }
      const take = Math.min(t.byteLength - done, chunkBytes - cur.length);
      cur.pieces.push({ tensor: i, tensorOffset: done, chunkOffset: cur.length, length: take });
      cur.length += take;
      done += take;
    }
  }
  return chunks;
}

/**
 * The page-aligned file range a pinned mapping must cover so the copy engine can read every chunk from it, or
 * null when there is nothing to copy (nothing to register). The range must lie in one mapping, so it may span at
 * most `maxView` bytes: past that the load fails with `InvalidArgument` naming the sizes.
 *
 * @example
 * ```ts
 * mappedRange([{ fileOffset: 5000, length: 100, pieces }], 4096, 2 ** 32, "m.safetensors"); // { start: 4096, length: 1004 }
 * mappedRange([], 4096, 2 ** 32, "m.safetensors"); // null
 * ```
 */
export function mappedRange(chunks: Chunk[], page: number, maxView: number, path: string): { start: number; length: number } | null {
  if (chunks.length === 0) return null;
  return mappedSpans([[Math.min(...chunks.map((c) => c.fileOffset)), Math.max(...chunks.map((c) => c.fileOffset + c.length))]], page, maxView, path)[0]!;
}

/**
 * The file ranges to pin for copies that read `ranges` (`[start, end)`, in file order), each starting on a page:
 * ranges that share a page are one (registrations may not overlap), ranges apart stay apart (their gaps are not
 * read, so not pinned). Each must lie in one mapping, at most `maxView` bytes, else `InvalidArgument` as in
 * {@link mappedRange}.
 *
 * @example
 * ```ts
 * mappedSpans([[100, 200], [4000, 4100], [20000, 20010]], 4096, 2 ** 32, "m.safetensors");
 * // [{ start: 0, length: 4100 }, { start: 16384, length: 3626 }]
 * ```
 */
export function mappedSpans(ranges: ReadonlyArray<readonly [number, number]>, page: number, maxView: number, path: string): Array<{ start: number; length: number }> {
  const spans: Array<{ start: number; end: number }> = [];
  for (const [from, to] of ranges) {
    const start = Math.floor(from / page) * page;
    const last = spans.at(-1);
    if (last && start < Math.ceil(last.end / page) * page) last.end = Math.max(last.end, to);
    else spans.push({ start, end: to });
  }
  return spans.map(({ start, end }) => {
    if (end - start > maxView) {
      throw new SafetensorsError(
        "InvalidArgument",
        `hostRegister pins the loaded bytes as one mapping, but ${path} needs ${end - start} bytes and one mapping holds at most ${maxView} here; load without hostRegister, or fewer tensors at a time (names)`,
      );
    }
    return { start, length: end - start };
  });
}
