/** libc through `bun:ffi`. Thin: declares the symbols and converts values; `../libc.ts` checks errors. */
import { CString, dlopen, FFIType, ptr, read, toArrayBuffer } from "bun:ffi";
import type { LibCBinding } from "../libc.ts";

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
  const { symbols: c } = dlopen("libc.so.6", {
    open: { args: ["cstring", "i32"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
    lseek: { args: ["i32", "i64", "i32"], returns: FFIType.i64_fast },
    // i64, not ptr: MAP_FAILED is −1 and must stay visible.
    mmap: { args: ["u64", "u64", "i32", "i32", "i32", "i64"], returns: "i64" },
    munmap: { args: ["u64", "u64"], returns: "i32" },
    madvise: { args: ["u64", "u64", "i32"], returns: "i32" },
    posix_fadvise: { args: ["i32", "i64", "i64", "i32"], returns: "i32" },
    sysconf: { args: ["i32"], returns: FFIType.i64_fast },
    memcpy: { args: ["u64", "u64", "u64"], returns: "void" },
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "ptr" },
  });
  // munmap(void*, size_t) has the shape of JSC's deallocator(void* bytes, void* context): with the length as the
  // context, the collector itself unmaps, with no JavaScript callback running during GC.
  const munmapPtr = (c.munmap as unknown as { ptr: number }).ptr;
  const encoder = new TextEncoder();
  return {
    runtime: "bun",
    maxView: MAX_VIEW,
    open: (path, flags) => c.open(encoder.encode(`${path}\0`), flags),
    close: (fd) => c.close(fd),
    lseek: (fd, offset, whence) => Number(c.lseek(fd, offset, whence)),
    mmap: (addr, length, prot, flags, fd, offset) => c.mmap(addr, length, prot, flags, fd, offset) as bigint,
    munmap: (addr, length) => c.munmap(addr, length),
    madvise: (addr, length, advice) => c.madvise(addr, length, advice),
    posixFadvise: (fd, offset, length, advice) => c.posix_fadvise(fd, offset, length, advice),
    sysconf: (name) => Number(c.sysconf(name)),
    memcpy: (dst, src, length) => c.memcpy(dst, src, length),
    errno: () => read.i32(c.__errno_location()!, 0),
    strerror: (errno) => new CString(c.strerror(errno)!).toString(),
    view: (addr, length) => toArrayBuffer(Number(addr), 0, length),
    viewOwningMapping: (addr, length) => toArrayBufferWithDeallocator(Number(addr), 0, length, length, munmapPtr),
    address: (view) => BigInt(ptr(view as Uint8Array)),
  };
}
