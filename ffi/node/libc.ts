/** libc through Node's `node:ffi`. Thin: declares the symbols and converts values; `src/io/libc.ts` checks errors. */
import { read } from "node:fs";
import { AT_EMPTY_PATH, type LibCBinding } from "../types.ts";
import { ownedViews } from "../owned-views.ts";
import { nodeFfi } from "./api.ts";

/** V8 takes ArrayBuffers far past 4 GiB; keep views within what a typed array can index exactly. */
const MAX_VIEW = 2 ** 52;

const I32 = "int32";
const I64 = "int64";
const U32 = "uint32";
const U64 = "uint64";
const PTR = "pointer";

/**
 * Opens glibc and returns the raw binding (Node 26+). Calls run on the JS thread, but for preads on several
 * threads; `uint64`/`int64` arguments are bigint in `node:ffi`, so sizes and offsets are converted here.
 *
 * @example
 * ```ts
 * const raw = bindLibc();
 * console.log(raw.sysconf(30)); // page size
 * ```
 */
export function bindLibc(): LibCBinding {
  const ffi = nodeFfi();
  const f = (args: string[], result = I32) => ({ arguments: args, return: result });
  const { functions: c } = ffi.dlopen("libc.so.6", {
    open: f([PTR, I32]),
    close: f([I32]),
    lseek: f([I32, I64, I32], I64),
    pread: f([I32, PTR, U64, I64], I64),
    statx: f([I32, PTR, I32, U32, PTR]),
    // int64, not pointer: MAP_FAILED is −1 and must stay visible.
    mmap: f([PTR, U64, I32, I32, I32, I64], I64),
    munmap: f([PTR, U64]),
    madvise: f([PTR, U64, I32]),
    posix_fadvise: f([I32, I64, I64, I32]),
    sysconf: f([I32], I64),
    // The raw system call, for io_uring (`../advise-ring.ts`), which glibc does not wrap.
    syscall: f([I64, U64, U64, U64, U64, U64, U64], I64),
    __errno_location: f([], PTR),
    strerror: f([I32], PTR),
  });
  const encoder = new TextEncoder();
  const emptyPath = new Uint8Array(1);
  const num = (v: unknown): number => Number(v as number | bigint);
  const big = (v: number | bigint): bigint => BigInt(v);
  // Machine words: a negative argument (AT_FDCWD) is its two's complement.
  const word = (v: number | bigint): bigint => BigInt.asUintN(64, BigInt(v));
  const view = (addr: bigint, length: number) => ffi.toArrayBuffer(addr, length, false);
  return {
    runtime: "node",
    maxView: MAX_VIEW,
    open: (path, flags) => num(c.open(encoder.encode(`${path}\0`), flags)),
    close: (fd) => num(c.close(fd)),
    lseek: (fd, offset, whence) => num(c.lseek(fd, big(offset), whence)),
    // One thread reads here (node:ffi calls block); more go to libuv's thread pool, fs.read into a view of the
    // memory that no JavaScript touches (a bad address is the kernel's EFAULT there, −1 like the pread here).
    pread: (fd, dst, length, offset, threads) =>
      new Promise((resolve) => {
        // A pointer argument takes strings and buffers too: only an address may reach pread here.
        if (typeof dst !== "bigint") throw new TypeError(`pread: the destination is not an address (${typeof dst})`);
        if (threads <= 1) return resolve(num(c.pread(fd, dst, big(length), big(offset))));
        read(fd, new Uint8Array(view(dst, length)), 0, length, offset, (err, n) => resolve(err ? -1 : n));
      }),
    fstatx: (fd, mask, out) => num(c.statx(fd, emptyPath, AT_EMPTY_PATH, mask, out)),
    mmap: (addr, length, prot, flags, fd, offset) => c.mmap(addr, big(length), prot, flags, fd, big(offset)) as bigint,
    munmap: (addr, length) => num(c.munmap(addr, big(length))),
    madvise: (addr, length, advice) => num(c.madvise(addr, big(length), advice)),
    posixFadvise: (fd, offset, length, advice) => num(c.posix_fadvise(fd, big(offset), big(length), advice)),
    sysconf: (name) => num(c.sysconf(name)),
    syscall: (nr, a = 0, b = 0, d = 0, e = 0, g = 0, h = 0) => num(c.syscall(big(nr), word(a), word(b), word(d), word(e), word(g), word(h))),
    errno: () => ffi.getInt32(c.__errno_location() as bigint),
    strerror: (errno) => ffi.toString(c.strerror(errno) as bigint),
    address: (bytes) => ffi.getRawPointer(bytes),
    view,
    // toArrayBuffer has no free hook: unmapped once collected, or at once by releaseView.
    ...ownedViews(view, (addr, length) => c.munmap(addr, big(length))),
  };
}
