/**
 * A remote file's reads of a rank's runs onto CUDA, runs at most `gapBytes` apart fetched as one ranged GET (the
 * rule of {@link sliceReads}, as on cpu). The pinned ring reads run by run (a piece of a run where it straddles
 * slots); the first read within a merged read fetches all of it into memory, held until every byte of its runs has
 * been read out: at most the span of the runs it merges.
 */
import { sliceReads } from "../checkpoint/slice.ts";
import type { LibC } from "../io/libc.ts";
import type { ByteSource } from "../io/source.ts";
import { lastAtOrBefore } from "./sorted.ts";

/** One merged read: its span in the file, its runs' bytes not yet read out, and its bytes once asked for. */
interface Merged {
  offset: number;
  end: number;
  left: number;
  bytes?: Promise<Uint8Array>;
}

/**
 * `source` with `read` serving `runs` (file offsets, in the order the ring reads them) through merged reads; reads
 * outside a merged read go to `source` as they are. `libc` writes into the ring's raw slot addresses.
 *
 * @example
 * ```ts
 * const reads = coalescedReads(file.source, [[100, 8], [4000, 8]], 4096, libc);
 * await reads.read(100, 8, slot); // one GET of bytes 100..4008; the second run's read then copies from it
 * ```
 */
export function coalescedReads(source: ByteSource, runs: Array<[number, number]>, gapBytes: number, libc: LibC): ByteSource {
  const merged: Merged[] = sliceReads({ runs }, gapBytes)
    .filter((r) => r.pieces.length > 1)
    .map((r) => ({ offset: r.offset, end: r.offset + r.length, left: r.pieces.reduce((a, p) => a + p[2], 0) }));
  const starts = merged.map((m) => m.offset);
  const around = (offset: number, length: number): Merged | undefined => {
    const m = merged[lastAtOrBefore(starts, offset)];
    return m && offset + length <= m.end ? m : undefined;
  };
  return {
    ...source,
    async read(offset, length, into) {
      const m = around(offset, length);
      if (!m || length === 0) return source.read(offset, length, into);
      m.bytes ??= (async () => {
        const bytes = new Uint8Array(m.end - m.offset);
        await source.read(m.offset, bytes.byteLength, bytes);
        return bytes;
      })();
      const bytes = await m.bytes;
      const dst = typeof into === "bigint" ? new Uint8Array(libc.view(into, length)) : into;
      dst.set(bytes.subarray(offset - m.offset, offset - m.offset + length));
      // Every run read out: the merged bytes go.
      if ((m.left -= length) <= 0) m.bytes = undefined;
    },
  };
}
