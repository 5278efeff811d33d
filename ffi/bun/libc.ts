/** libc through `bun:ffi`. Thin: opens the symbols (`libc-symbols.ts`) and converts values; `src/io/libc.ts` checks errors. */
import { CString, dlopen, ptr, read, toArrayBuffer } from "bun:ffi";
import { AT_EMPTY_PATH, type LibCBinding } from "../types.ts";
import { detach } from "../detach.ts";
import { LIBC_SYMBOLS } from "./libc-symbols.ts";
import { preadPool } from "./pread-pool.ts";

/** `toArrayBuffer`'s documented form with a context and a deallocator, which bun-types leaves out. */
const toArrayBufferWithDeallocator = toArrayBuffer as unknown as (
  address: number,
  byteOffset: number,
  byteLength: number,
  context: number,
  deallocator: number,
) => ArrayBuffer;

/** JavaScriptCore caps one ArrayBuffer at 4 GiB. */
const MAX_VIEW = 2 ** 32;

/**
 * Opens glibc and returns the raw binding.
 *
 * @example
 * ```ts
 * const raw = bindLibc();
 * console.log(raw.sysconf(30)); // page size
 * ```
 */
export function bindLibc(): LibCBinding {
  const { symbols: c } = dlopen("libc.so.6", LIBC_SYMBOLS);
  // munmap(void*, size_t) has the shape of JSC's deallocator(void* bytes, void* context): with the length as the
  // context, the collector itself unmaps, with no JavaScript callback running during GC.
  const munmapPtr = (c.munmap as unknown as { ptr: number }).ptr;
  const encoder = new TextEncoder();
  const emptyPath = new Uint8Array(1);
  return {
    runtime: "bun",
    maxView: MAX_VIEW,
    open: (path, flags) => c.open(encoder.encode(`${path}\0`), flags),
    close: (fd) => c.close(fd),
    lseek: (fd, offset, whence) => Number(c.lseek(fd, offset, whence)),
    // One thread reads here (blocking, no hand-off); more go to the Worker pool, which shares this memory.
    pread: (fd, dst, length, offset, threads) =>
      threads <= 1 ? Promise.resolve(Number(c.pread(fd, dst, length, offset))) : preadPool.pread(threads, { fd, dst, length, offset }),
    fstatx: (fd, mask, out) => c.statx(fd, emptyPath, AT_EMPTY_PATH, mask, out),
    mmap: (addr, length, prot, flags, fd, offset) => c.mmap(addr, length, prot, flags, fd, offset) as bigint,
    munmap: (addr, length) => c.munmap(addr, length),
    madvise: (addr, length, advice) => c.madvise(addr, length, advice),
    posixFadvise: (fd, offset, length, advice) => c.posix_fadvise(fd, offset, length, advice),
    sysconf: (name) => Number(c.sysconf(name)),
    syscall: (nr, a = 0, b = 0, d = 0, e = 0, f = 0, g = 0) => Number(c.syscall(nr, a, b, d, e, f, g)),
    errno: () => read.i32(c.__errno_location()!, 0),
    strerror: (errno) => new CString(c.strerror(errno)!).toString(),
    address: (bytes) => BigInt(ptr(bytes)),
    view: (addr, length) => toArrayBuffer(Number(addr), 0, length),
    viewOwningMapping: (addr, length) => toArrayBufferWithDeallocator(Number(addr), 0, length, length, munmapPtr),
    // Detaching hands the memory back at once: the deallocator (munmap) runs then, not at collection.
    releaseView: (buffer) => detach(buffer),
  };
}
