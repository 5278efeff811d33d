/**
 * libc through FFI, for Bun (`bun:ffi`) and Deno (`Deno.dlopen`). Each runtime's binding (`bun/libc.ts`,
 * `deno/libc.ts`) only declares symbols and converts values; this file turns failed calls into
 * {@link SafetensorsError}s named after errno, once for both. Addresses are `bigint` everywhere.
 */
import { constants } from "node:os";
import { SafetensorsError } from "../src/errors.ts";
import { runtime } from "./runtime.ts";
import { createAdviseRing, type AdviseRing } from "./advise-ring.ts";
import { installSigbusGuard, type SigbusGuard } from "./sigbus-guard.ts";

export type { MappingGuard, SigbusGuard } from "./sigbus-guard.ts";

/** What a runtime binding provides: the raw calls (−1 / `MAP_FAILED` plus errno on failure) and views. */
export interface LibCBinding {
  readonly runtime: "bun" | "deno";
  /** Largest ArrayBuffer a zero-copy view may span in this runtime (Bun: 4 GiB). */
  readonly maxView: number;
  open(path: string, flags: number): number;
  close(fd: number): number;
  /** Returns the new offset, or −1. */
  lseek(fd: number, offset: number, whence: number): number;
  /**
   * `pread(fd, dst, length, offset)` with up to `threads` running at once, off the JS thread where the runtime
   * allows (Bun: a Worker pool, or this thread when `threads` is 1; Deno: its FFI thread pool). Resolves to the
   * count read or −1 (errno is lost: the call ran on another thread); rejects only once the pread cannot run.
   */
  pread(fd: number, dst: bigint, length: number, offset: number, threads: number): Promise<number>;
  /** Returns the address, or −1n (`MAP_FAILED`). */
  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number): bigint;
  munmap(addr: bigint, length: number): number;
  madvise(addr: bigint, length: number, advice: number): number;
  /** Returns 0 or an errno value (it does not set errno). */
  posixFadvise(fd: number, offset: number, length: number, advice: number): number;
  sysconf(name: number): number;
  /** `syscall(nr, ...)`, up to six arguments (missing ones are 0); −1 and errno on failure. */
  syscall(nr: number, ...args: Array<number | bigint>): number;
  errno(): number;
  strerror(errno: number): string;
  /** A zero-copy ArrayBuffer over `[addr, addr + length)`; the caller keeps that memory alive. */
  view(addr: bigint, length: number): ArrayBuffer;
  /** Like {@link view}, and `munmap(addr, length)` runs once the buffer has been garbage-collected. */
  viewOwningMapping(addr: bigint, length: number): ArrayBuffer;
}

/** libc with checked calls: every failure throws a {@link SafetensorsError} whose code is the errno name. */
export interface LibC {
  readonly runtime: "bun" | "deno";
  readonly pageSize: number;
  readonly maxView: number;
  /** Opens read-only (`O_RDONLY | O_CLOEXEC`) and returns the descriptor. */
  openRead(path: string): number;
  close(fd: number): void;
  /** The size of the open file (`lseek(fd, 0, SEEK_END)`). */
  fileSize(fd: number): number;
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
  view(addr: bigint, length: number): ArrayBuffer;
  viewOwningMapping(addr: bigint, length: number): ArrayBuffer;
  /**
   * Keeps file mappings' reads past the file's end (it shrank) from ending the process with SIGBUS: they read
   * zeros and the guard reports it (`./sigbus-guard.ts`; installed on first use; x86-64 only, a no-op elsewhere).
   */
  readonly sigbus: SigbusGuard;
  /** Opens `path` for positional reads into host memory from up to `threads` threads at once. */
  openHostFile(path: string, threads: number): HostFile;
}

/** A file read with `pread(2)` straight into host memory (pinned buffers, mappings), several reads in flight. */
export interface HostFile {
  /** How many reads run in parallel (worker threads on Bun, the FFI thread pool on Deno). */
  readonly threads: number;
  /**
   * One `pread(fd, dst, length, offset)`: resolves to the count read (short reads happen; −1 is an error). A
   * rejection, too, means the read is over: nothing writes into `dst` after this promise settles.
   */
  pread(dst: bigint, length: number, offset: number): Promise<number>;
  /** Closes the descriptor (once the reads in flight are over, so it cannot be reused under them). Idempotent. */
  close(): void;
}

/** x86-64 / aarch64 Linux values (the generic ABI; DESIGN.md §4). */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_POPULATE_READ = 22;
export const POSIX_FADV_DONTNEED = 4;
const O_RDONLY = 0;
const O_CLOEXEC = 0x80000;
const SEEK_END = 2;
const SC_PAGESIZE = 30;

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** The name of an errno value (`2` → `"ENOENT"`); unknown values read `"E<n>"`. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

function failure(b: LibCBinding, errno: number, what: string): SafetensorsError {
  return new SafetensorsError(errnoName(errno) as `E${Uppercase<string>}`, `${what}: ${b.strerror(errno)} (${errnoName(errno)})`);
}

/** Wraps a runtime binding with errno checks. Exported for the bindings' own tests. */
export function checked(b: LibCBinding): LibC {
  const pageSize = b.sysconf(SC_PAGESIZE);
  const check = (r: number, what: string): number => {
    if (r < 0) throw failure(b, b.errno(), what);
    return r;
  };
  const openRead = (path: string) => check(b.open(path, O_RDONLY | O_CLOEXEC), `cannot open ${path}`);
  const madvise = (addr: bigint, length: number, advice: number) => void check(b.madvise(addr, length, advice), `madvise(${advice}) failed`);
  let ring: AdviseRing | { unavailable: string } | undefined;
  let guards: SigbusGuard | undefined;
  return {
    runtime: b.runtime,
    pageSize: pageSize > 0 ? pageSize : 4096,
    maxView: b.maxView,
    openRead,
    close: (fd) => void check(b.close(fd), `close(${fd})`),
    fileSize: (fd) => check(b.lseek(fd, 0, SEEK_END), "cannot size the file"),
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
    view: (addr, length) => b.view(addr, length),
    viewOwningMapping: (addr, length) => b.viewOwningMapping(addr, length),
    get sigbus() {
      return (guards ??= installSigbusGuard(b));
    },
    openHostFile: (path, threads) => hostFile(b, path, openRead(path), threads),
  };
}

/** The descriptor outlives `close()` until the last read in flight is over: a reused fd would feed it another file. */
function hostFile(b: LibCBinding, path: string, fd: number, threads: number): HostFile {
  const n = Math.max(1, Math.floor(threads));
  let open = true;
  let reading = 0;
  const closeWhenIdle = () => {
    if (!open && reading === 0 && fd >= 0) {
      b.close(fd);
      fd = -1;
    }
  };
  return {
    threads: n,
    async pread(dst, length, offset) {
      if (!open) throw new SafetensorsError("Closed", `${path} is closed`);
      reading++;
      try {
        return await b.pread(fd, dst, length, offset, n);
      } finally {
        reading--;
        closeWhenIdle();
      }
    },
    close() {
      open = false;
      closeWhenIdle();
    },
  };
}

/** Why there is no libc here, in one line. */
export interface LibCUnavailable {
  unavailable: string;
}

let loading: Promise<LibC | LibCUnavailable> | undefined;

/**
 * libc for the running runtime, loaded once: Bun through `bun:ffi`, Deno through `Deno.dlopen` (needs
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
  loading ??= bind();
  return loading;
}

async function bind(): Promise<LibC | LibCUnavailable> {
  if (process.platform !== "linux") return { unavailable: `no libc binding for ${process.platform} (Linux only)` };
  if (runtime === "node") return { unavailable: "Node has no FFI" };
  if (runtime === "deno" && !denoFfiGranted()) return { unavailable: "Deno runs without --allow-ffi" };
  try {
    const mod: { bindLibc(): LibCBinding } =
      runtime === "bun" ? await import("./bun/libc.ts") : await import("./deno/libc.ts");
    return checked(mod.bindLibc());
  } catch (e) {
    return { unavailable: `cannot load libc: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}` };
  }
}

function denoFfiGranted(): boolean {
  const deno = (globalThis as { Deno?: { permissions?: { querySync?(d: { name: string }): { state: string } } } })
    .Deno;
  return deno?.permissions?.querySync?.({ name: "ffi" }).state === "granted";
}
