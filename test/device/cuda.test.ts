import { describe, expect, test } from "vitest";
import { loadCudart } from "../../ffi/cudart.ts";
import type { CudaRuntime } from "../../ffi/types.ts";
import { check, Cleanup, deviceAlloc, hostAlloc, probeCuda, type CudaDevice, type CudaFailure } from "../../src/device/cuda.ts";
import { PinnedRing } from "../../src/device/pipeline.ts";
import { SafetensorsError } from "../../src/errors.ts";

function caught(f: () => unknown): SafetensorsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return e as SafetensorsError;
  }
  throw new Error("expected a throw");
}

describe("Cleanup", () => {
  test("runs newest first, all of them despite failures, once; rethrows the first failure", () => {
    const log: string[] = [];
    const c = new Cleanup();
    c.add(() => log.push("a"));
    c.add(() => {
      log.push("b");
      throw new Error("b failed");
    });
    c.add(() => {
      log.push("c");
      throw new Error("c failed");
    });
    expect(c.size).toBe(3);
    expect(() => c.run()).toThrow("c failed");
    expect(log).toEqual(["c", "b", "a"]);
    expect(c.size).toBe(0);
    c.run();
    expect(log).toEqual(["c", "b", "a"]);
  });
});

/**
 * What the tests below assume, checked rather than taken for granted: the real libcudart is found the usual way
 * and there is no GPU driver (cudaErrorInsufficientDriver, 35), as on every machine that runs CI. Elsewhere (Node,
 * no CUDA installed, a machine with a GPU) they skip and their title says why.
 */
const NO_DRIVER = 35;
const whyNot = await (async () => {
  const lib = await loadCudart({ env: {} });
  if (!lib.ok) return lib.reason;
  const err = lib.cuda.cudaGetDeviceCount(new Int32Array(1));
  return err === NO_DRIVER ? "" : `cudaGetDeviceCount gave ${err}, not cudaErrorInsufficientDriver: a driver is here`;
})();

describe.skipIf(whyNot !== "")(`the CUDA layer with libcudart and no driver${whyNot && ` (skipped: ${whyNot})`}`, async () => {
  const lib = await loadCudart({ env: {} });
  const cuda: CudaRuntime = lib.ok ? lib.cuda : undefined!;
  // The real runtime, with the probe skipped: what a load would hold if cudaSetDevice had worked.
  const device: CudaDevice = { cuda, index: 0, name: "cuda:0", count: 1, driverVersion: 0, runtimeVersion: 13000 };

  test("probe: no usable device, and why", async () => {
    const p = await probeCuda(0, {});
    expect(p.ok).toBe(false);
    expect(!p.ok && p.reason).toBe("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version");
  });

  test("probe: missing library", async () => {
    const p = await probeCuda(0, { TENSORMAP_CUDART: "/nonexistent.so" });
    expect(!p.ok && p.reason).toMatch(/^libcudart not found \(tried \/nonexistent\.so;/);
  });

  test("check turns an error code into CudaError with the error's name and message", () => {
    expect(() => check(cuda, 0, "anything")).not.toThrow();
    const e = caught(() => check(cuda, 2, "cudaMalloc(1 GB)"));
    expect(e.code).toBe("CudaError");
    expect(e.message).toBe("cudaMalloc(1 GB) failed: cudaErrorMemoryAllocation: out of memory");
    expect(e.cause as CudaFailure).toEqual({ call: "cudaMalloc(1 GB)", error: 2, name: "cudaErrorMemoryAllocation", message: "out of memory" });
  });

  test("pinned and device allocations fail cleanly and leave nothing to free", () => {
    const cleanup = new Cleanup();
    const host = caught(() => hostAlloc(cuda, 1 << 20, cleanup));
    expect(host.message).toMatch(/^cudaHostAlloc\(0\.00 GB\) failed: cudaErrorInsufficientDriver: /);
    const dev = caught(() => deviceAlloc(device, 4e9, cleanup));
    expect(dev.code).toBe("CudaError");
    expect(dev.message).toMatch(/^cudaMalloc\(4\.00 GB\) on cuda:0 failed: cudaErrorInsufficientDriver: /);
    expect(cleanup.size).toBe(0);
  });

  test("the ring fails at its first allocation and frees what it made", () => {
    const pinned = caught(() => PinnedRing.open(device, { slots: 2, slotBytes: 1 << 20 }));
    expect((pinned.cause as CudaFailure).call).toBe("cudaHostAlloc(0.00 GB)");
    // Without pinned slots (registered mappings) the stream is the first thing to fail.
    const stream = caught(() => PinnedRing.open(device, { pinned: false }));
    expect((stream.cause as CudaFailure).call).toBe("cudaStreamCreateWithFlags");
    expect((stream.cause as CudaFailure).name).toBe("cudaErrorInsufficientDriver");
  });

  test("ring sizes are checked before anything is allocated", () => {
    expect(caught(() => PinnedRing.open(device, { slots: 0 })).code).toBe("InvalidArgument");
    expect(caught(() => PinnedRing.open(device, { slotBytes: 100 })).code).toBe("InvalidArgument");
  });
});
