/**
 * The CUDA runtime as tensormap sees it: the raw `libcudart` calls a loader needs (DESIGN §5), with pointers as
 * `bigint` on every runtime, plus the address of a JS buffer for copies into it. File reads into host memory
 * are libc's (`LibC.openHostFile` in `ffi/libc.ts`). The per-runtime bindings live in
 * `ffi/bun/cudart.ts` and `ffi/deno/cudart.ts`; {@link loadCudart} picks one by dynamic import.
 */
import { runtime } from "./runtime.ts";
import { loadLibc } from "./libc.ts";

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

/** Library file names tried in each directory and then through the dynamic linker's search path. */
const NAMES = ["libcudart.so", "libcudart.so.13", "libcudart.so.12"];

/**
 * Where to look for libcudart, in order: `TENSORMAP_CUDART` alone when set (an explicit choice is not second-
 * guessed), else each name in `$CUDA_HOME/lib64` and `/usr/local/cuda/lib64`, then the bare names for `dlopen`'s
 * own search (`LD_LIBRARY_PATH`, ldconfig).
 *
 * @example
 * ```ts
 * cudartCandidates({ CUDA_HOME: "/opt/cuda" })[0]; // "/opt/cuda/lib64/libcudart.so"
 * ```
 */
export function cudartCandidates(env: Record<string, string | undefined>): string[] {
  const explicit = env.TENSORMAP_CUDART;
  if (explicit) return [explicit];
  const dirs = [env.CUDA_HOME ? `${env.CUDA_HOME.replace(/\/+$/, "")}/lib64` : null, "/usr/local/cuda/lib64"];
  const paths = dirs.filter((d): d is string => d !== null).flatMap((d) => NAMES.map((n) => `${d}/${n}`));
  return [...new Set([...paths, ...NAMES])];
}

/** What a binding module exports: open one candidate, or throw the runtime's dlopen error. */
export interface CudartBinding {
  openCudart(path: string): CudaRuntime;
}

const cache = new Map<string, Promise<CudartLoad>>();

/**
 * Loads libcudart through the running runtime's FFI, trying {@link cudartCandidates} in order. Never throws:
 * a missing library or a runtime without FFI (Node) is `{ ok: false, reason }`. Results are cached per
 * candidate list; loading a library says nothing about whether a GPU is usable (ask `cudaGetDeviceCount`).
 *
 * @example
 * ```ts
 * const lib = await loadCudart();
 * if (lib.ok) lib.cuda.cudaGetDeviceCount(new Int32Array(1));
 * else console.log(lib.reason); // "libcudart not found (tried …)"
 * ```
 */
export function loadCudart(opts: { env?: Record<string, string | undefined> } = {}): Promise<CudartLoad> {
  const candidates = cudartCandidates(opts.env ?? process.env);
  const key = candidates.join("\0");
  let found = cache.get(key);
  if (!found) {
    found = tryLoad(candidates);
    cache.set(key, found);
  }
  return found;
}

async function tryLoad(candidates: string[]): Promise<CudartLoad> {
  if (runtime === "node") return { ok: false, reason: "no FFI on Node (use Bun or Deno for CUDA)" };
  // A load reads files through libc too; and libc says why there is no FFI (Deno without --allow-ffi).
  const libc = await loadLibc();
  if ("unavailable" in libc) return { ok: false, reason: `FFI unavailable: ${libc.unavailable}` };
  let binding: CudartBinding;
  try {
    binding = runtime === "bun" ? await import("./bun/cudart.ts") : await import("./deno/cudart.ts");
  } catch (e) {
    return { ok: false, reason: `FFI unavailable: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}` };
  }
  let first = "";
  for (const path of candidates) {
    try {
      return { ok: true, cuda: binding.openCudart(path) };
    } catch (e) {
      first ||= (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
    }
  }
  return { ok: false, reason: `libcudart not found (tried ${candidates.join(", ")}; ${first})` };
}
