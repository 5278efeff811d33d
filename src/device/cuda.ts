/**
 * The checked layer over the raw {@link CudaRuntime}: CUDA error codes become {@link SafetensorsError}s that
 * carry the error's name and message, a probe says whether (and why not) a device is usable, and a
 * {@link Cleanup} frees what was allocated when anything fails.
 */
import { loadCudart } from "../../ffi/cudart.ts";
import { CUDA, type CudaRuntime } from "../../ffi/types.ts";
import { SafetensorsError } from "../errors.ts";

/** What a CUDA failure carries besides its message (as the error's `cause`). */
export interface CudaFailure {
  call: string;
  error: number;
  name: string;
  message: string;
}

/** `"cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"`. */
function describeCudaError(cuda: CudaRuntime, error: number): string {
  return `${cuda.cudaGetErrorName(error)}: ${cuda.cudaGetErrorString(error)}`;
}

/**
 * Throws a `CudaError` unless `error` is `cudaSuccess`.
 *
 * @example
 * ```ts
 * check(cuda, cuda.cudaSetDevice(0), "cudaSetDevice(0)");
 * // SafetensorsError CudaError: "cudaSetDevice(0) failed: cudaErrorInsufficientDriver: CUDA driver version is …"
 * ```
 */
export function check(cuda: CudaRuntime, error: number, call: string): void {
  if (error === CUDA.success) return;
  const cause: CudaFailure = { call, error, name: cuda.cudaGetErrorName(error), message: cuda.cudaGetErrorString(error) };
  throw new SafetensorsError("CudaError", `${call} failed: ${cause.name}: ${cause.message}`, { cause });
}

/** A usable CUDA device, selected on the calling thread. */
export interface CudaDevice {
  cuda: CudaRuntime;
  index: number;
  name: `cuda:${number}`;
  count: number;
  /** Versions as CUDA encodes them (13000 is 13.0); the driver's is 0 when none is installed. */
  driverVersion: number;
  runtimeVersion: number;
}

export type CudaProbe = { ok: true; device: CudaDevice } | { ok: false; reason: string };

/**
 * Finds out whether CUDA device `index` is usable here: libcudart loads, the driver answers, the device exists
 * and can be selected (`cudaSetDevice`, which also makes it current for later calls on this thread). Never throws.
 *
 * @example
 * ```ts
 * const p = await probeCuda(0);
 * if (!p.ok) console.log(p.reason); // "cudaErrorInsufficientDriver: CUDA driver version is insufficient …"
 * ```
 */
export async function probeCuda(index: number, env?: Record<string, string | undefined>): Promise<CudaProbe> {
  const lib = await loadCudart(env ? { env } : {});
  if (!lib.ok) return { ok: false, reason: lib.reason };
  const { cuda } = lib;
  const out = new Int32Array(1);
  const err = cuda.cudaGetDeviceCount(out);
  if (err !== CUDA.success) return { ok: false, reason: describeCudaError(cuda, err) };
  const count = out[0]!;
  if (count === 0) return { ok: false, reason: describeCudaError(cuda, CUDA.errorNoDevice) };
  if (index >= count) return { ok: false, reason: `cuda:${index} does not exist (${count} device${count === 1 ? "" : "s"})` };
  const set = cuda.cudaSetDevice(index);
  if (set !== CUDA.success) return { ok: false, reason: describeCudaError(cuda, set) };
  cuda.cudaDriverGetVersion(out);
  const driverVersion = out[0]!;
  cuda.cudaRuntimeGetVersion(out);
  return { ok: true, device: { cuda, index, name: `cuda:${index}`, count, driverVersion, runtimeVersion: out[0]! } };
}

/**
 * Undo actions run newest first, each at most once, all of them even when some fail (the first failure is
 * rethrown after the rest ran). Used so a failed load frees its device and pinned memory.
 *
 * @example
 * ```ts
 * const cleanup = new Cleanup();
 * try { const p = hostAlloc(cuda, n, cleanup); … } catch (e) { cleanup.run(); throw e; }
 * ```
 */
export class Cleanup {
  #undo: (() => void)[] = [];

  /** How many undo actions are pending. */
  get size(): number {
    return this.#undo.length;
  }

  add(undo: () => void): void {
    this.#undo.push(undo);
  }

  run(): void {
    let failure: unknown;
    while (this.#undo.length) {
      try {
        this.#undo.pop()!();
      } catch (e) {
        failure ??= e;
      }
    }
    if (failure !== undefined) throw failure;
  }
}

/** `cudaMalloc` of `size` bytes; the free goes on `cleanup`. An out-of-memory error says how much was free. */
export function deviceAlloc(dev: CudaDevice, size: number, cleanup: Cleanup): bigint {
  const { cuda } = dev;
  const out = new BigUint64Array(1);
  const err = cuda.cudaMalloc(out, BigInt(size));
  if (err !== CUDA.success) {
    const free = new BigUint64Array(1);
    const total = new BigUint64Array(1);
    const mem = cuda.cudaMemGetInfo(free, total) === CUDA.success ? `, ${gb(free[0]!)} free of ${gb(total[0]!)}` : "";
    check(cuda, err, `cudaMalloc(${gb(size)}) on ${dev.name}${mem}`);
  }
  const ptr = out[0]!;
  cleanup.add(() => check(cuda, cuda.cudaFree(ptr), "cudaFree"));
  return ptr;
}

/** `cudaHostAlloc` (portable pinned memory); the free goes on `cleanup`. */
export function hostAlloc(cuda: CudaRuntime, size: number, cleanup: Cleanup): bigint {
  const out = new BigUint64Array(1);
  check(cuda, cuda.cudaHostAlloc(out, BigInt(size), CUDA.hostAllocPortable), `cudaHostAlloc(${gb(size)})`);
  const ptr = out[0]!;
  cleanup.add(() => check(cuda, cuda.cudaFreeHost(ptr), "cudaFreeHost"));
  return ptr;
}

function gb(bytes: number | bigint): string {
  return `${(Number(bytes) / 1e9).toFixed(2)} GB`;
}
