/** libc through `Deno.dlopen`. Thin: declares the symbols and converts values; `src/io/libc.ts` checks errors. */
import { AT_EMPTY_PATH, type LibCBinding } from "../types.ts";
import { ownedViews } from "../owned-views.ts";
import { deno } from "./api.ts";

/** V8 takes ArrayBuffers far past 4 GiB; keep views within what a typed array can index exactly. */
const MAX_VIEW = 2 ** 52;

/**
 * Opens glibc and returns the raw binding (needs `--allow-ffi`).
 *
 * @example
 * ```ts
 * const raw = bindLibc();
 * console.log(raw.sysconf(30)); // page size
 * ```
 */
export function bindLibc(): LibCBinding {
  const { symbols: c } = deno().dlopen("libc.so.6", {
    open: { parameters: ["buffer", "i32"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
    // On Deno's blocking thread pool: the JS thread goes on, and several reads run at once.
    pread: { parameters: ["i32", "usize", "usize", "i64"], result: "isize", nonblocking: true },
    statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
    mmap: { parameters: ["usize", "usize", "i32", "i32", "i32", "i64"], result: "isize" },
    munmap: { parameters: ["usize", "usize"], result: "i32" },
    madvise: { parameters: ["usize", "usize", "i32"], result: "i32" },
    posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
    sysconf: { parameters: ["i32"], result: "i64" },
    // The raw system call, for io_uring (`../advise-ring.ts`), which glibc does not wrap.
    syscall: { parameters: ["i64", "usize", "usize", "usize", "usize", "usize", "usize"], result: "i64" },
    __errno_location: { parameters: [], result: "pointer" },
    strerror: { parameters: ["i32"], result: "pointer" },
  });
  const { UnsafePointer, UnsafePointerView } = deno();
  const encoder = new TextEncoder();
  const emptyPath = new Uint8Array(1);
  const num = (v: unknown): number => Number(v as number | bigint);
  const pointer = (addr: bigint) => UnsafePointer.create(addr);
  const view = (addr: bigint, length: number) => UnsafePointerView.getArrayBuffer(pointer(addr)!, length);
  return {
    runtime: "deno",
    maxView: MAX_VIEW,
    open: (path, flags) => num(c.open(encoder.encode(`${path}\0`), flags)),
    close: (fd) => num(c.close(fd)),
    lseek: (fd, offset, whence) => num(c.lseek(fd, offset, whence)),
    pread: async (fd, dst, length, offset) => num(await (c.pread(fd, dst, length, offset) as Promise<number | bigint>)),
    fstatx: (fd, mask, out) => num(c.statx(fd, emptyPath, AT_EMPTY_PATH, mask, out)),
    mmap: (addr, length, prot, flags, fd, offset) => BigInt(c.mmap(addr, length, prot, flags, fd, offset) as bigint),
    munmap: (addr, length) => num(c.munmap(addr, length)),
    madvise: (addr, length, advice) => num(c.madvise(addr, length, advice)),
    posixFadvise: (fd, offset, length, advice) => num(c.posix_fadvise(fd, offset, length, advice)),
    sysconf: (name) => num(c.sysconf(name)),
    syscall: (nr, a = 0, b = 0, d = 0, e = 0, f = 0, g = 0) => num(c.syscall(nr, a, b, d, e, f, g)),
    errno: () => new UnsafePointerView(c.__errno_location()!).getInt32(),
    strerror: (errno) => UnsafePointerView.getCString(c.strerror(errno)!),
    address: (bytes) => BigInt(UnsafePointer.value(UnsafePointer.of(bytes))),
    view,
    // getArrayBuffer has no free hook: unmapped once collected, or at once by releaseView.
    ...ownedViews(view, (addr, length) => c.munmap(addr, length)),
  };
}
