/**
 * A Bun Worker that runs `pread(fd, dst, length, offset)` for the main thread: the descriptor and the destination
 * address belong to the process, so reading here lands in the same pinned buffer the main thread hands to CUDA.
 */
import { dlopen } from "bun:ffi";

const { pread } = dlopen("libc.so.6", {
  pread: { args: ["i32", "u64", "u64", "i64"], returns: "i64" },
}).symbols;

declare const self: Worker;

self.onmessage = (e: MessageEvent<{ id: number; fd: number; dst: bigint; length: number; offset: number }>) => {
  const { id, fd, dst, length, offset } = e.data;
  postMessage({ id, n: Number(pread(fd, dst, length, offset)) });
};
