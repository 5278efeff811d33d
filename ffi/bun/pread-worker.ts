/**
 * A Bun Worker that runs `pread(fd, dst, length, offset)` for the main thread: the descriptor and the destination
 * address belong to the process, so reading here lands in the same pinned buffer the main thread hands to CUDA.
 * Every job gets exactly one answer, `{ id, n }` or `{ id, error }`, so the pool knows when it is over.
 */
import { dlopen } from "bun:ffi";
import { LIBC_SYMBOLS } from "./libc-symbols.ts";

const { pread } = dlopen("libc.so.6", { pread: LIBC_SYMBOLS.pread }).symbols;

declare const self: Worker;

self.onmessage = (e: MessageEvent<{ id: number; fd: number; dst: bigint; length: number; offset: number }>) => {
  const { id, fd, dst, length, offset } = e.data;
  try {
    postMessage({ id, n: Number(pread(fd, dst, length, offset)) });
  } catch (err) {
    postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
};
