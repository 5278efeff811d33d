import { describe, expect, test } from "vitest";
import { cudartCandidates, loadCudart } from "../../ffi/cudart.ts";
import { CUDA } from "../../ffi/types.ts";
import { runtime } from "../../ffi/runtime.ts";

const MISSING = { TENSORMAP_CUDART: "/nonexistent/libcudart.so" };

describe("cudartCandidates", () => {
  test("TENSORMAP_CUDART alone when set", () => {
    expect(cudartCandidates({ TENSORMAP_CUDART: "/x/libcudart.so.12", CUDA_HOME: "/opt/cuda" })).toEqual(["/x/libcudart.so.12"]);
  });

  test("then $CUDA_HOME/lib64, /usr/local/cuda/lib64, then bare names", () => {
    const c = cudartCandidates({ CUDA_HOME: "/opt/cuda/" });
    expect(c).toEqual([
      "/opt/cuda/lib64/libcudart.so",
      "/opt/cuda/lib64/libcudart.so.13",
      "/opt/cuda/lib64/libcudart.so.12",
      "/usr/local/cuda/lib64/libcudart.so",
      "/usr/local/cuda/lib64/libcudart.so.13",
      "/usr/local/cuda/lib64/libcudart.so.12",
      "libcudart.so",
      "libcudart.so.13",
      "libcudart.so.12",
    ]);
    // CUDA_HOME pointing at the default directory adds nothing twice.
    expect(cudartCandidates({ CUDA_HOME: "/usr/local/cuda" })).toEqual(c.slice(3));
  });
});

describe.skipIf(runtime !== "node")("loadCudart on Node", () => {
  test("says there is no FFI", async () => {
    const lib = await loadCudart();
    expect(lib.ok).toBe(false);
    expect(!lib.ok && lib.reason).toMatch(/no FFI on Node/);
  });
});

describe.skipIf(runtime === "node")("libcudart through FFI (installed, no GPU)", async () => {
  const lib = await loadCudart({ env: {} });
  const cuda = lib.ok ? lib.cuda : undefined!;

  test("loads from /usr/local/cuda/lib64", () => {
    expect(lib.ok).toBe(true);
    expect(cuda.path).toBe("/usr/local/cuda/lib64/libcudart.so");
  });

  test("a CUDA_HOME without the library falls through to the default directory", async () => {
    const other = await loadCudart({ env: { CUDA_HOME: "/nonexistent" } });
    expect(other.ok && other.cuda.path).toBe("/usr/local/cuda/lib64/libcudart.so");
  });

  test("cudaGetDeviceCount reports the missing driver", () => {
    const count = new Int32Array([-1]);
    expect(cuda.cudaGetDeviceCount(count)).toBe(CUDA.errorInsufficientDriver);
    expect(cuda.cudaGetErrorName(CUDA.errorInsufficientDriver)).toBe("cudaErrorInsufficientDriver");
    expect(cuda.cudaGetErrorString(CUDA.errorInsufficientDriver)).toMatch(/driver version is insufficient/);
    expect(cuda.cudaGetErrorName(CUDA.errorNoDevice)).toBe("cudaErrorNoDevice");
    expect(cuda.cudaGetErrorName(CUDA.errorNotReady)).toBe("cudaErrorNotReady");
  });

  test("versions: the runtime's is known, the driver's is 0 (none installed)", () => {
    const v = new Int32Array([-1]);
    expect(cuda.cudaRuntimeGetVersion(v)).toBe(0);
    expect(v[0]).toBeGreaterThanOrEqual(12000);
    expect(cuda.cudaDriverGetVersion(v)).toBe(0);
    expect(v[0]).toBe(0);
  });

  test("allocation calls fail with the driver error and write nothing", () => {
    const out = new BigUint64Array([7n]);
    expect(cuda.cudaHostAlloc(out, 4096n, CUDA.hostAllocPortable)).toBe(CUDA.errorInsufficientDriver);
    expect(cuda.cudaMalloc(out, 4096n)).toBe(CUDA.errorInsufficientDriver);
    expect(cuda.cudaStreamCreateWithFlags(out, CUDA.streamNonBlocking)).toBe(CUDA.errorInsufficientDriver);
    expect(out[0]).toBe(7n);
  });

  test("a missing library is a reason, not a throw, and names the path", async () => {
    const missing = await loadCudart({ env: MISSING });
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.reason).toMatch(/^libcudart not found \(tried \/nonexistent\/libcudart\.so;/);
  });
});
