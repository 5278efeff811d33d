/**
 * Node binding of {@link CudaRuntime} over `node:ffi` (Node 26+). Calls run on the JS thread (the current device
 * is per host thread); 64-bit arguments go in as bigint.
 */
import type { CudaRuntime } from "../types.ts";
import { nodeFfi } from "./api.ts";

const I32 = "int32";
const U32 = "uint32";
const U64 = "uint64";
const PTR = "pointer";

/**
 * Opens one libcudart file; throws Node's dlopen error when it cannot be loaded.
 *
 * @example
 * ```ts
 * const cuda = openCudart("/usr/local/cuda/lib64/libcudart.so");
 * cuda.cudaGetDeviceCount(new Int32Array(1)); // 0, or 35 with no driver
 * ```
 */
export function openCudart(path: string): CudaRuntime {
  const ffi = nodeFfi();
  const f = (args: string[], result = I32) => ({ arguments: args, return: result });
  const { functions: s } = ffi.dlopen(path, {
    cudaGetDeviceCount: f([PTR]),
    cudaSetDevice: f([I32]),
    cudaDriverGetVersion: f([PTR]),
    cudaRuntimeGetVersion: f([PTR]),
    cudaGetErrorName: f([I32], PTR),
    cudaGetErrorString: f([I32], PTR),
    cudaMemGetInfo: f([PTR, PTR]),
    cudaDeviceGetAttribute: f([PTR, I32, I32]),
    cudaMalloc: f([PTR, U64]),
    cudaFree: f([PTR]),
    cudaHostAlloc: f([PTR, U64, U32]),
    cudaFreeHost: f([PTR]),
    cudaHostRegister: f([PTR, U64, U32]),
    cudaHostUnregister: f([PTR]),
    cudaMemcpy: f([PTR, PTR, U64, I32]),
    cudaMemcpyAsync: f([PTR, PTR, U64, I32, PTR]),
    cudaMemcpy2DAsync: f([PTR, U64, PTR, U64, U64, U64, I32, PTR]),
    cudaStreamCreateWithFlags: f([PTR, U32]),
    cudaStreamSynchronize: f([PTR]),
    cudaStreamDestroy: f([PTR]),
    cudaEventCreateWithFlags: f([PTR, U32]),
    cudaEventRecord: f([PTR, PTR]),
    cudaEventQuery: f([PTR]),
    cudaEventDestroy: f([PTR]),
  });
  // Every call but the two that return strings passes its arguments through and returns the cudaError_t.
  const calls = Object.fromEntries(Object.entries(s).map(([name, fn]) => [name, (...args: unknown[]) => fn(...args) as number]));
  const cstr = (name: keyof typeof s) => (e: number) => ffi.toString(s[name](e) as bigint);
  return {
    ...(calls as unknown as Omit<CudaRuntime, "path" | "cudaGetErrorName" | "cudaGetErrorString" | "address">),
    path,
    cudaGetErrorName: cstr("cudaGetErrorName"),
    cudaGetErrorString: cstr("cudaGetErrorString"),
    address: (bytes) => ffi.getRawPointer(bytes),
  };
}
