/**
 * libc with checked calls: the raw binding (`ffi/libc.ts`) returns −1 and sets errno; this wraps it so every
 * failure is a {@link SafetensorsError} whose code is the errno name, once for both runtimes.
 */
import { constants } from "node:os";
import { createAdviseRing, type AdviseRing } from "../../ffi/advise-ring.ts";
import { loadLibcBinding } from "../../ffi/libc.ts";
import { installSigbusGuard } from "../../ffi/sigbus-guard.ts";
import {
  AT_FDCWD,
  O_CLOEXEC,
  O_RDONLY,
  RENAME_EXCHANGE,
  SC_PAGESIZE,
  SEEK_END,
  STATX_BASIC_STATS,
  SYS_RENAMEAT2,
  type LibCBinding,
  type LibCUnavailable,
  type SigbusGuard,
} from "../../ffi/types.ts";
import { SafetensorsError, type ErrnoCode } from "../errors.ts";

export type { LibCUnavailable } from "../../ffi/types.ts";

/** libc with checked calls: every failure throws a {@link SafetensorsError} whose code is the errno name. */
export interface LibC {
  readonly runtime: LibCBinding["runtime"];
  readonly pageSize: number;
  readonly maxView: number;
  /** Opens read-only (`O_RDONLY | O_CLOEXEC`) and returns the descriptor. */
  openRead(path: string): number;
  close(fd: number): void;
  /** The size of the open file (`lseek(fd, 0, SEEK_END)`). */
  fileSize(fd: number): number;
  /** The open file's basic attributes as `struct statx` into `out` (at least `STATX_BYTES` long). */
  fstatx(fd: number, out: Uint8Array): void;
  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint;
  munmap(addr: bigint, length: number): void;
  madvise(addr: bigint, length: number, advice: number): void;
  /**
   * `madvise` on a kernel thread where the kernel allows it (io_uring), so this one goes on at once; the
   * promise settles when the kernel is done, rejecting with the errno name. Without io_uring (old kernels,
   * sandboxes that forbid it) the call runs here before this returns.
   */
  madviseInBackground(addr: bigint, length: number, advice: number): Promise<void>;
  posixFadvise(fd: number, offset: number, length: number, advice: number): void;
  /**
   * `pread` into host memory, up to `threads` at once off the JS thread (see `LibCBinding.pread`): resolves to
   * the count read or −1; the caller keeps `fd` open and `dst` alive until it settles.
   */
  pread(fd: number, dst: bigint, length: number, offset: number, threads: number): Promise<number>;
  /** The address of a JS buffer's first byte; the buffer must stay referenced while anything writes there. */
  address(bytes: Uint8Array): bigint;
  view(addr: bigint, length: number): ArrayBuffer;
  viewOwningMapping(addr: bigint, length: number): ArrayBuffer;
  /** Detaches a buffer of {@link viewOwningMapping} and unmaps it now; false where the runtime keeps it attached. */
  releaseView(buffer: ArrayBuffer): boolean;
  /**
   * Keeps file mappings' reads past the file's end (it shrank) from ending the process with SIGBUS: they read
   * zeros and the guard reports it (`ffi/sigbus-guard.ts`; installed on first use; x86-64 only, a no-op elsewhere).
   */
  readonly sigbus: SigbusGuard;
  /**
   * Swaps two paths in one step (`renameat2(…, RENAME_EXCHANGE)`): each then names what the other did, and
   * nobody ever sees either missing. Folders too. EINVAL or ENOSYS where the file system or kernel lacks it.
   */
  renameExchange(from: string, to: string): void;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/**
 * The name of an errno value (`2` → `"ENOENT"`); unknown values read `"E<n>"`.
 *
 * @example
 * ```ts
 * errnoName(13); // "EACCES"
 * ```
 */
export function errnoName(errno: number): ErrnoCode {
  return (errnoNames.get(errno) ?? `E${errno}`) as ErrnoCode;
}

function failure(b: LibCBinding, errno: number, what: string): SafetensorsError {
  return new SafetensorsError(errnoName(errno), `${what}: ${b.strerror(errno)} (${errnoName(errno)})`);
}

/**
 * Wraps a runtime binding with errno checks. Exported for the bindings' own tests.
 *
 * @example
 * ```ts
 * const libc = checked(bindLibc());
 * libc.openRead("/nonexistent"); // throws SafetensorsError ENOENT
 * ```
 */
export function checked(b: LibCBinding): LibC {
  const pageSize = b.sysconf(SC_PAGESIZE);
  const check = (r: number, what: string): number => {
    if (r < 0) throw failure(b, b.errno(), what);
    return r;
  };
  const openRead = (path: string) => check(b.open(path, O_RDONLY | O_CLOEXEC), `cannot open ${path}`);
  const madvise = (addr: bigint, length: number, advice: number) => void check(b.madvise(addr, length, advice), `madvise(${advice}) failed`);
  let ring: AdviseRing | LibCUnavailable | undefined;
  let guards: SigbusGuard | undefined;
  return {
    runtime: b.runtime,
    pageSize: pageSize > 0 ? pageSize : 4096,
    maxView: b.maxView,
    openRead,
    close: (fd) => void check(b.close(fd), `close(${fd})`),
    fileSize: (fd) => check(b.lseek(fd, 0, SEEK_END), "cannot size the file"),
    fstatx: (fd, out) => void check(b.fstatx(fd, STATX_BASIC_STATS, out), "cannot stat the file"),
    mmap(addr, length, prot, flags, fd, offset) {
      const p = b.mmap(addr, length, prot, flags, fd, offset);
      if (p === -1n) throw failure(b, b.errno(), `mmap of ${length} bytes failed`);
      return p;
    },
    munmap: (addr, length) => void check(b.munmap(addr, length), "munmap failed"),
    madvise,
    madviseInBackground(addr, length, advice) {
      ring ??= createAdviseRing(b);
      if ("unavailable" in ring) {
        // Runs now; a failure becomes the rejection.
        return new Promise((resolve) => resolve(madvise(addr, length, advice)));
      }
      return ring.madvise(addr, length, advice).then((errno) => {
        if (errno !== 0) throw failure(b, errno, `madvise(${advice}) failed`);
      });
    },
    posixFadvise(fd, offset, length, advice) {
      const err = b.posixFadvise(fd, offset, length, advice);
      if (err !== 0) throw failure(b, err, `posix_fadvise(${advice}) failed`);
    },
    pread: (fd, dst, length, offset, threads) => b.pread(fd, dst, length, offset, threads),
    address: (bytes) => b.address(bytes),
    view: (addr, length) => b.view(addr, length),
    viewOwningMapping: (addr, length) => b.viewOwningMapping(addr, length),
    releaseView: (buffer) => b.releaseView(buffer),
    get sigbus() {
      return (guards ??= installSigbusGuard(b));
    },
    renameExchange(from, to) {
      const nr = SYS_RENAMEAT2[process.arch];
      const what = `cannot exchange ${from} and ${to}`;
      if (nr === undefined) throw new SafetensorsError("ENOSYS", `${what}: renameat2 is not known on ${process.arch} (ENOSYS)`);
      const [a, c] = [cString(from), cString(to)];
      const here = BigInt.asUintN(64, BigInt(AT_FDCWD));
      check(b.syscall(nr, here, b.address(a), here, b.address(c), RENAME_EXCHANGE), what);
    },
  };
}

const encoder = new TextEncoder();

/** A path as a NUL-terminated C string. */
function cString(path: string): Uint8Array {
  return encoder.encode(`${path}\0`);
}

let loading: Promise<LibC | LibCUnavailable> | undefined;

/**
 * libc for the running runtime, checked, loaded once: Bun through `bun:ffi`, Deno through `Deno.dlopen` (needs
 * `--allow-ffi`). Where there is none (Node, Deno without the permission, not Linux) it says why instead.
 *
 * @example
 * ```ts
 * const libc = await loadLibc();
 * if ("unavailable" in libc) console.error(libc.unavailable);
 * else console.log(libc.pageSize);
 * ```
 */
export function loadLibc(): Promise<LibC | LibCUnavailable> {
  loading ??= loadLibcBinding().then((raw) => ("unavailable" in raw ? raw : checked(raw)));
  return loading;
}
