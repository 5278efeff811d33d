/**
 * The libc symbols tensormap calls through `bun:ffi`, declared once: the main thread's binding (`libc.ts`) opens
 * them all, each pread Worker (`pread-worker.ts`) opens only `pread`.
 */
import { FFIType, type FFIFunction } from "bun:ffi";

export const LIBC_SYMBOLS = {
  open: { args: ["cstring", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  lseek: { args: ["i32", "i64", "i32"], returns: FFIType.i64_fast },
  pread: { args: ["i32", "u64", "u64", "i64"], returns: FFIType.i64_fast },
  statx: { args: ["i32", "ptr", "i32", "u32", "ptr"], returns: "i32" },
  // i64, not ptr: MAP_FAILED is −1 and must stay visible.
  mmap: { args: ["u64", "u64", "i32", "i32", "i32", "i64"], returns: "i64" },
  munmap: { args: ["u64", "u64"], returns: "i32" },
  madvise: { args: ["u64", "u64", "i32"], returns: "i32" },
  posix_fadvise: { args: ["i32", "i64", "i64", "i32"], returns: "i32" },
  sysconf: { args: ["i32"], returns: FFIType.i64_fast },
  // The raw system call, for io_uring (`../advise-ring.ts`), which glibc does not wrap.
  syscall: { args: ["i64", "u64", "u64", "u64", "u64", "u64", "u64"], returns: FFIType.i64_fast },
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "ptr" },
} as const satisfies Record<string, FFIFunction>;
