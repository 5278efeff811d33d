/**
 * Deno binding of {@link CudaRuntime} over `Deno.dlopen` (needs `--allow-ffi`). CUDA calls run on the JS thread
 * (the current device is per host thread).
 */
import type { CudaRuntime } from "../types.ts";
import { deno, type DenoPointer } from "./api.ts";

const I32 = "i32";
const U32 = "u32";
const U64 = "u64";
const BUF = "buffer";

/**
 * Opens one libcudart file; throws Deno's dlopen error when it cannot be loaded.
 *
 * @example
 * ```ts
 * const cuda = openCudart("/usr/local/cuda/lib64/libcudart.so");
 * cuda.cudaGetDeviceCount(new Int32Array(1)); // 0, or 35 with no driver
 * ```
 */
export function openCudart(path: string): CudaRuntime {
  const f = (parameters: string[], result = I32) => ({ parameters, result });
  const Deno = deno();
  const s = Deno.dlopen(path, {
    cudaGetDeviceCount: f([BUF]),
    cudaSetDevice: f([I32]),
    cudaDriverGetVersion: f([BUF]),
    cudaRuntimeGetVersion: f([BUF]),
    cudaGetErrorName: f([I32], "pointer"),
    cudaGetErrorString: f([I32], "pointer"),
    cudaMemGetInfo: f([BUF, BUF]),
    cudaDeviceGetAttribute: f([BUF, I32, I32]),
    cudaMalloc: f([BUF, U64]),
    cudaFree: f([U64]),
    cudaHostAlloc: f([BUF, U64, U32]),
    cudaFreeHost: f([U64]),
    cudaHostRegister: f([U64, U64, U32]),
    cudaHostUnregister: f([U64]),
    cudaMemcpy: f([U64, U64, U64, I32]),
    cudaMemcpyAsync: f([U64, U64, U64, I32, U64]),
    cudaMemcpy2DAsync: f([U64, U64, U64, U64, U64, U64, I32, U64]),
    cudaStreamCreateWithFlags: f([BUF, U32]),
    cudaStreamSynchronize: f([U64]),
    cudaStreamDestroy: f([U64]),
    cudaEventCreateWithFlags: f([BUF, U32]),
    cudaEventRecord: f([U64, U64]),
    cudaEventQuery: f([U64]),
    cudaEventDestroy: f([U64]),
  }).symbols;
  const call = (name: keyof typeof s) => (...args: unknown[]) => s[name](...args) as number;
  const cstr = (name: keyof typeof s) => (e: number) => Deno.UnsafePointerView.getCString(s[name](e) as NonNullable<DenoPointer>);
  return {
    path,
    cudaGetDeviceCount: call("cudaGetDeviceCount"),
    cudaSetDevice: call("cudaSetDevice"),
    cudaDriverGetVersion: call("cudaDriverGetVersion"),
    cudaRuntimeGetVersion: call("cudaRuntimeGetVersion"),
    cudaGetErrorName: cstr("cudaGetErrorName"),
    cudaGetErrorString: cstr("cudaGetErrorString"),
    cudaMemGetInfo: call("cudaMemGetInfo"),
    cudaDeviceGetAttribute: call("cudaDeviceGetAttribute"),
    cudaMalloc: call("cudaMalloc"),
    cudaFree: call("cudaFree"),
    cudaHostAlloc: call("cudaHostAlloc"),
    cudaFreeHost: call("cudaFreeHost"),
    cudaHostRegister: call("cudaHostRegister"),
    cudaHostUnregister: call("cudaHostUnregister"),
    cudaMemcpy: call("cudaMemcpy"),
    cudaMemcpyAsync: call("cudaMemcpyAsync"),
    cudaMemcpy2DAsync: call("cudaMemcpy2DAsync"),
    cudaStreamCreateWithFlags: call("cudaStreamCreateWithFlags"),
    cudaStreamSynchronize: call("cudaStreamSynchronize"),
    cudaStreamDestroy: call("cudaStreamDestroy"),
    cudaEventCreateWithFlags: call("cudaEventCreateWithFlags"),
    cudaEventRecord: call("cudaEventRecord"),
    cudaEventQuery: call("cudaEventQuery"),
    cudaEventDestroy: call("cudaEventDestroy"),
    address: (bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))),
  };
}
