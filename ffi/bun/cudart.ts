/**
 * Bun binding of {@link CudaRuntime} over `bun:ffi`. Calls block the JS thread (each is short); parallel file
 * reads run `pread` in Worker threads, which share the process's memory, so a pinned address is valid in all.
 */
import { dlopen, ptr } from "bun:ffi";
import type { CudaRuntime, HostFile } from "../cudart.ts";

/** O_RDONLY | O_CLOEXEC on Linux. */
const O_RDONLY_CLOEXEC = 0o2000000;

const libc = dlopen("libc.so.6", {
  open: { args: ["ptr", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  pread: { args: ["i32", "u64", "u64", "i64"], returns: "i64" },
}).symbols;

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
    cudaMallocAsync: { args: ["ptr", "u64", "u64"], returns: "i32" },
    cudaFreeAsync: { args: ["u64", "u64"], returns: "i32" },
    cudaHostAlloc: { args: ["ptr", "u64", "u32"], returns: "i32" },
    cudaFreeHost: { args: ["u64"], returns: "i32" },
    cudaHostRegister: { args: ["u64", "u64", "u32"], returns: "i32" },
    cudaHostUnregister: { args: ["u64"], returns: "i32" },
    cudaMemcpy: { args: ["u64", "u64", "u64", "i32"], returns: "i32" },
    cudaMemcpyAsync: { args: ["u64", "u64", "u64", "i32", "u64"], returns: "i32" },
    cudaStreamCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
    cudaStreamSynchronize: { args: ["u64"], returns: "i32" },
    cudaStreamDestroy: { args: ["u64"], returns: "i32" },
    cudaEventCreateWithFlags: { args: ["ptr", "u32"], returns: "i32" },
    cudaEventRecord: { args: ["u64", "u64"], returns: "i32" },
    cudaEventQuery: { args: ["u64"], returns: "i32" },
    cudaEventSynchronize: { args: ["u64"], returns: "i32" },
    cudaEventDestroy: { args: ["u64"], returns: "i32" },
  }).symbols;
  return {
    ...s,
    path,
    cudaGetErrorName: (e) => String(s.cudaGetErrorName(e)),
    cudaGetErrorString: (e) => String(s.cudaGetErrorString(e)),
    address: (bytes) => BigInt(ptr(bytes)),
    openHostFile,
  };
}

function openHostFile(path: string, threads: number): HostFile {
  const fd = libc.open(new TextEncoder().encode(`${path}\0`), O_RDONLY_CLOEXEC);
  if (fd < 0) throw new Error(`cannot open ${path} for reading`);
  const n = Math.max(1, Math.floor(threads));
  let open = true;
  return {
    threads: n,
    pread: (dst, length, offset) => {
      if (!open) return Promise.reject(new Error(`${path} is closed`));
      // One thread: read on this one; the Workers only pay off when several reads overlap.
      if (n === 1) return Promise.resolve(Number(libc.pread(fd, dst, length, offset)));
      return readers.pread(n, { fd, dst, length, offset });
    },
    close() {
      if (open) {
        open = false;
        libc.close(fd);
      }
    },
  };
}

interface ReadJob {
  fd: number;
  dst: bigint;
  length: number;
  offset: number;
}

/** A process-wide pool of pread Workers, grown on demand and kept referenced only while reads are pending. */
const readers = new (class {
  private workers: Worker[] = [];
  private pending = new Map<number, { resolve: (n: number) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private turn = 0;

  pread(threads: number, job: ReadJob): Promise<number> {
    while (this.workers.length < threads) this.workers.push(this.spawn());
    const id = this.nextId++;
    if (this.pending.size === 0) for (const w of this.workers) w.ref();
    const done = new Promise<number>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.workers[this.turn++ % threads]!.postMessage({ id, ...job });
    return done;
  }

  private spawn(): Worker {
    const w = new Worker(new URL("./pread-worker.ts", import.meta.url).href);
    w.unref();
    w.onmessage = (e: MessageEvent<{ id: number; n: number }>) => this.settle(e.data.id, (p) => p.resolve(e.data.n));
    w.onerror = (e) => {
      for (const id of [...this.pending.keys()]) this.settle(id, (p) => p.reject(new Error(`pread worker: ${e.message}`)));
    };
    return w;
  }

  private settle(id: number, how: (p: { resolve: (n: number) => void; reject: (e: Error) => void }) => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) for (const w of this.workers) w.unref();
    how(p);
  }
})();
