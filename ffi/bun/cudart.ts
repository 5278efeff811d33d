/** Bun binding of {@link CudaRuntime} over `bun:ffi`. Calls block the JS thread (each is short). */
import { dlopen, ptr } from "bun:ffi";
import type { CudaRuntime } from "../types.ts";

/**
 * Opens one libcudart file; throws Bun's dlopen error when it cannot be loaded.
 *
 * @example
 * ```ts
 * const cuda = openCudart("/usr/local/cuda/lib64/libcudart.so");
 * cuda.cudaGetDeviceCount(new Int32Array(1)); // 0, or 35 with no driver
 * ```
 */
export function openCudart(path: string): CudaRuntime {
  const s = dlopen(path, {
    cudaGetDeviceCount: { args: ["ptr"], returns: "i32" },
    cudaSetDevice: { args: ["i32"], returns: "i32" },
    cudaDriverGetVersion: { args: ["ptr"], returns: "i32" },
    cudaRuntimeGetVersion: { args: ["ptr"], returns: "i32" },
    cudaGetErrorName: { args: ["i32"], returns: "cstring" },
    cudaGetErrorString: { args: ["i32"], returns: "cstring" },
    cudaMemGetInfo: { args: ["ptr", "ptr"], returns: "i32" },
    cudaDeviceGetAttribute: { args: ["ptr", "i32", "i32"], returns: "i32" },
    cudaMalloc: { args: ["ptr", "u64"], returns: "i32" },
    cudaFree: { args: ["u64"], returns: "i32" },
    cudaHostAlloc: { args: ["ptr", "u64", "u32"], returns: "i32" },
    cudaFreeHost: { args: ["u64"], returns: "i32" },
    cudaHostRegister: { args: ["u64", "u64", "u32"], returns: "i32" },
    cudaHostUnregister: { args: ["u64"], returns: "i32" },
    cudaMemcpy: { args: ["u64", "u64", "u64", "i32"], returns: "i32" },
    cudaMemcpyAsync: { args: ["u64", "u64", "u64", "i32", "u64"], returns: "i32" },
    cudaMemcpy2DAsync: { args: ["u64", "u64", "u64", "u64", "u64", "u64", "i32", "u64"], returns: "i32" },
    cudaStreamCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
    cudaStreamSynchronize: { args: ["u64"], returns: "i32" },
    cudaStreamDestroy: { args: ["u64"], returns: "i32" },
    cudaEventCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
    cudaEventRecord: { args: ["u64", "u64"], returns: "i32" },
    cudaEventQuery: { args: ["u64"], returns: "i32" },
    cudaEventDestroy: { args: ["u64"], returns: "i32" },
  }).symbols;
  return {
    ...s,
    path,
    cudaGetErrorName: (e) => String(s.cudaGetErrorName(e)),
    cudaGetErrorString: (e) => String(s.cudaGetErrorString(e)),
    address: (bytes) => BigInt(ptr(bytes)),
  };
}
