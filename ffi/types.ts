/**
 * What the FFI layer speaks: the libc and libcudart constants tensormap uses and the interfaces of the raw
 * bindings. A leaf: it imports nothing, so the bindings, the SIGBUS guard and the io_uring ring share these
 * without importing each other. Addresses are `bigint` everywhere.
 */

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
export const POSIX_FADV_WILLNEED = 3;
export const POSIX_FADV_DONTNEED = 4;
export const O_RDONLY = 0;
export const O_CLOEXEC = 0x80000;
export const SEEK_END = 2;
export const SC_PAGESIZE = 30;
export const AT_EMPTY_PATH = 0x1000;
export const AT_FDCWD = -100;
export const RENAME_EXCHANGE = 2;
/** `renameat2` has no glibc wrapper before 2.28: its system call number (x86-64, aarch64). */
export const SYS_RENAMEAT2: Partial<Record<string, number>> = { x64: 316, arm64: 276 };
/** STATX_BASIC_STATS: type, mode, links, owner, times, inode, size, blocks. */
export const STATX_BASIC_STATS = 0x7ff;
/** `struct statx` is the same on every architecture (unlike `struct stat`); it fits this many bytes. */
export const STATX_BYTES = 256;

/** What a runtime binding of libc provides: the raw calls (−1 / `MAP_FAILED` plus errno on failure) and views. */
export interface LibCBinding {
  readonly runtime: "bun" | "deno" | "node";
  /** Largest ArrayBuffer a zero-copy view may span in this runtime (Bun: 4 GiB; V8, in Deno and Node: far more). */
  readonly maxView: number;
  open(path: string, flags: number): number;
  close(fd: number): number;
  /** Returns the new offset, or −1. */
  lseek(fd: number, offset: number, whence: number): number;
  /**
   * `pread(fd, dst, length, offset)` with up to `threads` running at once, off the JS thread where the runtime
   * allows (Bun: a Worker pool, or this thread when `threads` is 1; Deno: its FFI thread pool; Node: libuv's).
   * Resolves to the count read or −1 (errno is lost: the call may run on another thread); rejects only once the
   * pread cannot run.
   */
  pread(fd: number, dst: bigint, length: number, offset: number, threads: number): Promise<number>;
  /** `statx(fd, "", AT_EMPTY_PATH, mask, out)`: the open file's attributes into `out` ({@link STATX_BYTES}); 0 or −1. */
  fstatx(fd: number, mask: number, out: Uint8Array): number;
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
  /** The address of a JS buffer's first byte, for calls that write into it. The buffer must stay referenced. */
  address(bytes: Uint8Array): bigint;
  /** A zero-copy ArrayBuffer over `[addr, addr + length)`; the caller keeps that memory alive. */
  view(addr: bigint, length: number): ArrayBuffer;
  /** Like {@link view}, and `munmap(addr, length)` runs once the buffer has been garbage-collected. */
  viewOwningMapping(addr: bigint, length: number): ArrayBuffer;
  /**
   * Detaches a buffer from {@link viewOwningMapping} and unmaps its memory now: every view of it becomes empty,
   * so none can read the memory again. False when the runtime keeps the buffer attached (Bun does while an
   * asynchronous call holds it); it is then unmapped once collected, as before.
   */
  releaseView(buffer: ArrayBuffer): boolean;
}

/** Why there is no libc binding here, in one line. */
export interface LibCUnavailable {
  unavailable: string;
}

/** One guarded mapping. */
export interface MappingGuard {
  /** Whether a read of this mapping met a page the file no longer has (it read zeros instead). */
  faulted(): boolean;
  /** Stops guarding (the mapping is gone or holds no file pages any more). Idempotent. */
  release(): void;
}

/** Catches SIGBUS in registered mappings (`sigbus-guard.ts`). */
export interface SigbusGuard {
  /**
   * The faults caught in every guarded range, as the low and high halves of a counter: one read tells that
   * nothing happened (the hot path), before asking each {@link MappingGuard}.
   */
  readonly faults: Uint32Array;
  /** Guards `[addr, addr + length)`; unguarded (a crash, as before) only where no handler could be installed. */
  guard(addr: bigint, length: number): MappingGuard;
}

/** libcudart constants (cuda_runtime_api.h / driver_types.h, CUDA 12 and 13). */
export const CUDA = {
  success: 0,
  errorInsufficientDriver: 35,
  errorNoDevice: 100,
  errorNotReady: 600,
  hostAllocPortable: 1,
  hostRegisterPortable: 1,
  hostRegisterReadOnly: 8,
  memcpyHostToDevice: 1,
  memcpyDeviceToHost: 2,
  streamNonBlocking: 1,
  eventDisableTiming: 2,
  attrHostRegisterSupported: 99,
  attrHostRegisterReadOnlySupported: 113,
} as const;

/**
 * Raw libcudart calls. Each returns the `cudaError_t` (0 is success); out-parameters are typed arrays the call
 * writes into (`Int32Array` for `int*`, `BigUint64Array` for `void**`/`size_t*`/handles); pointers and handles
 * are `bigint`. Nothing here throws on a CUDA error: `src/device/cuda.ts` turns codes into errors.
 */
export interface CudaRuntime {
  /** The library file that was loaded. */
  readonly path: string;
  cudaGetDeviceCount(count: Int32Array): number;
  cudaSetDevice(device: number): number;
  cudaDriverGetVersion(version: Int32Array): number;
  cudaRuntimeGetVersion(version: Int32Array): number;
  cudaGetErrorName(error: number): string;
  cudaGetErrorString(error: number): string;
  cudaMemGetInfo(free: BigUint64Array, total: BigUint64Array): number;
  cudaDeviceGetAttribute(value: Int32Array, attr: number, device: number): number;
  cudaMalloc(ptr: BigUint64Array, size: bigint): number;
  cudaFree(ptr: bigint): number;
  cudaHostAlloc(ptr: BigUint64Array, size: bigint, flags: number): number;
  cudaFreeHost(ptr: bigint): number;
  cudaHostRegister(ptr: bigint, size: bigint, flags: number): number;
  cudaHostUnregister(ptr: bigint): number;
  cudaMemcpy(dst: bigint, src: bigint, count: bigint, kind: number): number;
  cudaMemcpyAsync(dst: bigint, src: bigint, count: bigint, kind: number, stream: bigint): number;
  cudaMemcpy2DAsync(dst: bigint, dpitch: bigint, src: bigint, spitch: bigint, width: bigint, height: bigint, kind: number, stream: bigint): number;
  cudaStreamCreateWithFlags(stream: BigUint64Array, flags: number): number;
  cudaStreamSynchronize(stream: bigint): number;
  cudaStreamDestroy(stream: bigint): number;
  cudaEventCreateWithFlags(event: BigUint64Array, flags: number): number;
  cudaEventRecord(event: bigint, stream: bigint): number;
  cudaEventQuery(event: bigint): number;
  cudaEventDestroy(event: bigint): number;

  /** The address of a JS buffer's first byte, for copies into or out of it. The buffer must stay referenced. */
  address(bytes: Uint8Array): bigint;
}

export type CudartLoad = { ok: true; cuda: CudaRuntime } | { ok: false; reason: string };

/** What a cudart binding module exports: open one candidate, or throw the runtime's dlopen error. */
export interface CudartBinding {
  openCudart(path: string): CudaRuntime;
}
