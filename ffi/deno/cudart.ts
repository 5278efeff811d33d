/**
 * Deno binding of {@link CudaRuntime} over `Deno.dlopen` (needs `--allow-ffi`). CUDA calls run on the JS thread
 * (the current device is per host thread); `pread` is `nonblocking`, so Deno's thread pool runs several at once.
 */
import type { CudaRuntime, HostFile } from "../cudart.ts";

/** The slice of Deno's FFI this file uses (the project type-checks without Deno's own declarations). */
interface DenoFfi {
  dlopen(
    path: string,
    symbols: Record<string, { parameters: string[]; result: string; nonblocking?: boolean }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  UnsafePointer: {
    create(value: bigint): unknown;
    of(buffer: Uint8Array): unknown;
    value(pointer: unknown): number | bigint;
  };
  UnsafePointerView: {
    getCString(pointer: unknown): string;
  };
}

const Deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;

/** O_RDONLY | O_CLOEXEC on Linux. */
const O_RDONLY_CLOEXEC = 0o2000000;

const libc = Deno.dlopen("libc.so.6", {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "u64", "usize", "i64"], result: "isize", nonblocking: true },
}).symbols;

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
    cudaMallocAsync: f([BUF, U64, U64]),
    cudaFreeAsync: f([U64, U64]),
    cudaHostAlloc: f([BUF, U64, U32]),
    cudaFreeHost: f([U64]),
    cudaHostRegister: f([U64, U64, U32]),
    cudaHostUnregister: f([U64]),
    cudaMemcpy: f([U64, U64, U64, I32]),
    cudaMemcpyAsync: f([U64, U64, U64, I32, U64]),
    cudaStreamCreateWithFlags: f([BUF, U32]),
    cudaStreamSynchronize: f([U64]),
    cudaStreamDestroy: f([U64]),
    cudaEventCreateWithFlags: f([BUF, U32]),
    cudaEventRecord: f([U64, U64]),
    cudaEventQuery: f([U64]),
    cudaEventSynchronize: f([U64]),
    cudaEventDestroy: f([U64]),
  }).symbols;
  const call = (name: string) => (...args: unknown[]) => s[name]!(...args) as number;
  const cstr = (name: string) => (e: number) => Deno.UnsafePointerView.getCString(s[name]!(e));
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
    cudaMallocAsync: call("cudaMallocAsync"),
    cudaFreeAsync: call("cudaFreeAsync"),
    cudaHostAlloc: call("cudaHostAlloc"),
    cudaFreeHost: call("cudaFreeHost"),
    cudaHostRegister: call("cudaHostRegister"),
    cudaHostUnregister: call("cudaHostUnregister"),
    cudaMemcpy: call("cudaMemcpy"),
    cudaMemcpyAsync: call("cudaMemcpyAsync"),
    cudaStreamCreateWithFlags: call("cudaStreamCreateWithFlags"),
    cudaStreamSynchronize: call("cudaStreamSynchronize"),
    cudaStreamDestroy: call("cudaStreamDestroy"),
    cudaEventCreateWithFlags: call("cudaEventCreateWithFlags"),
    cudaEventRecord: call("cudaEventRecord"),
    cudaEventQuery: call("cudaEventQuery"),
    cudaEventSynchronize: call("cudaEventSynchronize"),
    cudaEventDestroy: call("cudaEventDestroy"),
    address: (bytes) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))),
    openHostFile,
  };
}

function openHostFile(path: string, threads: number): HostFile {
  const fd = libc.open!(new TextEncoder().encode(`${path}\0`), O_RDONLY_CLOEXEC) as number;
  if (fd < 0) throw new Error(`cannot open ${path} for reading`);
  let open = true;
  return {
    threads: Math.max(1, Math.floor(threads)),
    pread: async (dst, length, offset) => {
      if (!open) throw new Error(`${path} is closed`);
      return Number(await (libc.pread!(fd, dst, length, offset) as Promise<number | bigint>));
    },
    close() {
      if (open) {
        open = false;
        libc.close!(fd);
      }
    },
  };
}
