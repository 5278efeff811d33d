import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { cudartCandidates, loadCudart } from "../../ffi/cudart.ts";
import { CUDA } from "../../ffi/types.ts";
import { hasFfi, runtime } from "../../ffi/runtime.ts";
import { denoBinary } from "../package/artefact.ts";

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

describe.skipIf(runtime !== "node" || hasFfi())("loadCudart on a Node without FFI", () => {
  test("says there is no FFI", async () => {
    const lib = await loadCudart();
    expect(lib.ok).toBe(false);
    expect(!lib.ok && lib.reason).toMatch(/no FFI on Node/);
  });
});

/**
 * What the tests below assume, checked rather than taken for granted: where libcudart is, and whether a driver
 * answers. Where an assumption does not hold (Node, no CUDA installed, a GPU machine, a library elsewhere) the
 * tests that need it skip and their title says why.
 */
const DEFAULT_DIR = "/usr/local/cuda/lib64";
const lib = !hasFfi() ? undefined : await loadCudart({ env: {} });
const cuda = lib?.ok ? lib.cuda : undefined;
const deviceCount = new Int32Array([-1]);
const countError = cuda?.cudaGetDeviceCount(deviceCount);
const whyNot = {
  ffi: !hasFfi() ? "no FFI here" : "",
  defaultDir: !hasFfi() ? "no FFI here" : existsSync(`${DEFAULT_DIR}/libcudart.so`) ? "" : `no libcudart.so in ${DEFAULT_DIR}`,
  noDriver: !lib ? "no FFI here" : !lib.ok ? lib.reason : countError === CUDA.errorInsufficientDriver ? "" : `cudaGetDeviceCount gave ${countError}: a driver is here`,
  driver: !lib ? "no FFI here" : !lib.ok ? lib.reason : countError === CUDA.success ? "" : `cudaGetDeviceCount gave ${countError}: no usable driver here`,
};
const skipped = (why: string) => (why ? ` (skipped: ${why})` : "");

describe.skipIf(whyNot.defaultDir !== "")(`libcudart in ${DEFAULT_DIR}${skipped(whyNot.defaultDir)}`, () => {
  test("loads from there when nothing says otherwise", () => {
    expect(cuda?.path).toBe(`${DEFAULT_DIR}/libcudart.so`);
  });

  test("a CUDA_HOME without the library falls through to it", async () => {
    const other = await loadCudart({ env: { CUDA_HOME: "/nonexistent" } });
    expect(other.ok && other.cuda.path).toBe(`${DEFAULT_DIR}/libcudart.so`);
  });
});

describe.skipIf(whyNot.noDriver !== "")(`libcudart with no GPU driver${skipped(whyNot.noDriver)}`, () => {
  test("cudaGetDeviceCount reports the missing driver", () => {
    expect(countError).toBe(CUDA.errorInsufficientDriver);
    expect(cuda!.cudaGetErrorName(CUDA.errorInsufficientDriver)).toBe("cudaErrorInsufficientDriver");
    expect(cuda!.cudaGetErrorString(CUDA.errorInsufficientDriver)).toMatch(/driver version is insufficient/);
    expect(cuda!.cudaGetErrorName(CUDA.errorNoDevice)).toBe("cudaErrorNoDevice");
    expect(cuda!.cudaGetErrorName(CUDA.errorNotReady)).toBe("cudaErrorNotReady");
  });

  test("versions: the runtime's is known, the driver's is 0 (none installed)", () => {
    const v = new Int32Array([-1]);
    expect(cuda!.cudaRuntimeGetVersion(v)).toBe(0);
    expect(v[0]).toBeGreaterThanOrEqual(12000);
    expect(cuda!.cudaDriverGetVersion(v)).toBe(0);
    expect(v[0]).toBe(0);
  });

  test("allocation calls fail with the driver error and write nothing", () => {
    const out = new BigUint64Array([7n]);
    expect(cuda!.cudaHostAlloc(out, 4096n, CUDA.hostAllocPortable)).toBe(CUDA.errorInsufficientDriver);
    expect(cuda!.cudaMalloc(out, 4096n)).toBe(CUDA.errorInsufficientDriver);
    expect(cuda!.cudaStreamCreateWithFlags(out, CUDA.streamNonBlocking)).toBe(CUDA.errorInsufficientDriver);
    expect(out[0]).toBe(7n);
  });
});

describe.skipIf(whyNot.driver !== "")(`libcudart with a GPU driver${skipped(whyNot.driver)}`, () => {
  test("a device is counted, the driver is at least as new as the runtime, and memory comes and goes", () => {
    expect(deviceCount[0]).toBeGreaterThanOrEqual(1);
    const [driver, runtimeVersion] = [new Int32Array(1), new Int32Array(1)];
    expect(cuda!.cudaDriverGetVersion(driver)).toBe(CUDA.success);
    expect(cuda!.cudaRuntimeGetVersion(runtimeVersion)).toBe(CUDA.success);
    expect(driver[0]).toBeGreaterThanOrEqual(runtimeVersion[0]!);
    expect(cuda!.cudaSetDevice(0)).toBe(CUDA.success);
    const out = new BigUint64Array(1);
    expect(cuda!.cudaMalloc(out, 4096n)).toBe(CUDA.success);
    expect(out[0]).not.toBe(0n);
    expect(cuda!.cudaFree(out[0]!)).toBe(CUDA.success);
  });
});

describe.skipIf(whyNot.ffi !== "")(`loadCudart through FFI${skipped(whyNot.ffi)}`, () => {
  test("a missing library is a reason, not a throw, and names the path", async () => {
    const missing = await loadCudart({ env: MISSING });
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.reason).toMatch(/^libcudart not found \(tried \/nonexistent\/libcudart\.so;/);
  });
});

test("Deno without --allow-env finds libcudart as if TENSORMAP_CUDART and CUDA_HOME were unset: no prompt, no NotCapable", () => {
  // The checkout's Deno, whatever runs the suite; --no-prompt turns a permission request into a thrown NotCapable.
  const script = join(mkdtempSync(join(tmpdir(), "tensormap-env-")), "auto.ts");
  writeFileSync(
    script,
    `import { resolveDevice } from ${JSON.stringify(new URL("../../src/device/load.ts", import.meta.url).href)};
    try { console.log(JSON.stringify((await resolveDevice("auto")).kind)); } catch (e) { console.log(JSON.stringify(e.name + ": " + e.message)); }`,
  );
  const r = spawnSync(denoBinary(), ["run", "--allow-read", "--allow-ffi", "--no-prompt", script], { encoding: "utf8", timeout: 60_000 });
  expect(JSON.parse(r.stdout.trim())).toBe("cpu");
});
