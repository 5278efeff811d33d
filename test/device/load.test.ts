import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { describe, expect, test } from "vitest";
import { loadToDevice, resolveDevice, toDevice, type LoadProgress } from "../../src/device/load.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { save } from "../../src/format/writer.ts";
import type { MmapSource } from "../../src/io/mmap.ts";
import { open, openSharded } from "../../src/checkpoint/open.ts";
import { hasFfi } from "../../ffi/runtime.ts";
import { expected, fixture, sha256 } from "../support/fixtures.ts";
import { mappedBytes } from "../support/proc.ts";

const TINY = fixture("safetensors/tiny-gpt2.safetensors");
const SHARDED = fixture("sharded");
const MISSING = { TENSORMAP_CUDART: "/nonexistent/libcudart.so" };
/** Why CUDA is unusable on this machine, as each runtime sees it. */
const NO_GPU = !hasFfi() ? /no FFI on Node/ : /cudaErrorInsufficientDriver: CUDA driver version is insufficient/;

async function rejection(p: Promise<unknown>): Promise<SafetensorsError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(SafetensorsError);
  return e as SafetensorsError;
}

describe("resolveDevice without a usable GPU", () => {
  test("cpu is cpu", async () => {
    expect(await resolveDevice("cpu")).toEqual({ kind: "cpu", reason: "cpu requested" });
  });

  test("auto falls back to cpu and says why", async () => {
    const t = await resolveDevice("auto");
    expect(t.kind).toBe("cpu");
    expect(t.reason).toMatch(/^auto chose cpu: no usable GPU \(/);
    expect(t.reason).toMatch(NO_GPU);
  });

  test.each(["cuda", "cuda:0", "cuda:3"])("%s is CudaUnavailable naming the CUDA error", async (spec) => {
    const e = await rejection(resolveDevice(spec));
    expect(e.code).toBe("CudaUnavailable");
    expect(e.message).toMatch(new RegExp(`^${spec === "cuda" ? "cuda:0" : spec} is not usable: `));
    expect(e.message).toMatch(NO_GPU);
  });

  test("a missing libcudart: CudaUnavailable under cuda, cpu under auto", async () => {
    const e = await rejection(resolveDevice("cuda:0", MISSING));
    expect(e.code).toBe("CudaUnavailable");
    expect(e.message).toMatch(!hasFfi() ? /no FFI on Node/ : /libcudart not found \(tried \/nonexistent\/libcudart\.so;/);
    const t = await resolveDevice("auto", MISSING);
    expect(t.kind).toBe("cpu");
  });

  test("loads refuse an explicit CUDA device before opening anything", async () => {
    expect((await rejection(loadToDevice("/nonexistent.safetensors", { device: "cuda" }))).code).toBe("CudaUnavailable");
    expect((await rejection(loadToDevice(TINY, { device: "tpu" }))).code).toBe("InvalidArgument");
  });
});

describe("loading to cpu (the fallback)", () => {
  test("auto loads every tensor with the reference bytes, reporting progress in order", async () => {
    const want = expected("safetensors/tiny-gpt2.expected.json");
    const seen: LoadProgress[] = [];
    using w = await loadToDevice(TINY, { device: "auto", onProgress: (p) => seen.push(p) });
    expect(w.device).toBe("cpu");
    expect(w.reason).toMatch(NO_GPU);
    expect(new Set(w.keys())).toEqual(new Set(Object.keys(want)));
    for (const [name, t] of w) {
      expect(t.device).toBe("cpu");
      expect([t.dtype, t.shape, t.byteLength]).toEqual([want[name]!.dtype, want[name]!.shape, want[name]!.nbytes]);
      expect(sha256(w.toHost(name))).toBe(want[name]!.sha256);
    }
    const total = Object.values(want).reduce((a, t) => a + t.nbytes, 0);
    expect(w.bytes).toBe(total);
    expect(seen.length).toBe(w.size);
    expect(seen.at(-1)).toEqual({ file: TINY, bytesDone: total, bytesTotal: total });
    seen.reduce((prev, p) => (expect(p.bytesDone).toBeGreaterThanOrEqual(prev), p.bytesDone), 0);
  });

  test("a sharded directory loads every shard's tensors", async () => {
    const want = expected("sharded/expected.json");
    using w = await loadToDevice(SHARDED, { device: "cpu" });
    expect(w.reason).toBe("cpu requested");
    expect(w.size).toBe(Object.keys(want).length);
    for (const [name, t] of Object.entries(want)) expect(sha256(w.toHost(name)), name).toBe(t.sha256);
  });

  test("a PyTorch checkpoint loads too, strided views and tied weights included", async () => {
    const want = expected("torch/state-dict.expected.json");
    using weights = await loadToDevice(fixture("torch/state-dict.pt"), { device: "cpu" });
    expect([...weights.keys()].sort()).toEqual(Object.keys(want).sort());
    for (const [name, w] of Object.entries(want)) {
      const t = weights.get(name)!;
      expect(t.device === "cpu" && sha256(t.bytes), name).toBe(w.sha256);
    }
  });

  test("names picks tensors across shards; an unknown name fails the load", async () => {
    using w = await loadToDevice(SHARDED, { device: "cpu", names: ["wte.weight", "h.2.mlp.c_fc.weight"] });
    expect(w.keys()).toEqual(["wte.weight", "h.2.mlp.c_fc.weight"]);
    const e = await rejection(loadToDevice(SHARDED, { device: "cpu", names: ["wte.weight", "nope"] }));
    expect([e.code, e.message]).toEqual(["TensorNotFound", `no tensor named "nope" in ${join(SHARDED, "model.safetensors.index.json")}`]);
  });

  test("the event loop runs during a load", async () => {
    let finished = false;
    let ranDuring = false;
    setImmediate(() => (ranDuring = !finished));
    using _w = await loadToDevice(TINY, { device: "cpu" });
    finished = true;
    expect(ranDuring).toBe(true);
  });

  test("toHost returns copies; free() invalidates the tensors, twice is fine", async () => {
    const w = await loadToDevice(TINY, { device: "cpu" });
    const name = w.keys()[0]!;
    const copy = w.toHost(name);
    copy.fill(0xff);
    expect(w.toHost(name)).not.toEqual(copy);
    expect((w.get(name) as { bytes: Uint8Array }).bytes.byteLength).toBe(copy.byteLength);
    w.free();
    w.free();
    expect(() => w.get(name)).toThrow(/freed/);
    expect(() => w.toHost("missing")).toThrow(SafetensorsError);
  });

  test("toDevice on an open file leaves the file to its owner", async () => {
    using file = await open(TINY);
    const w = await toDevice(file, { device: "cpu", names: ["wte.weight"] });
    expect(w.keys()).toEqual(["wte.weight"]);
    w.free();
    expect(file.tensor("wte.weight").bytes.byteLength).toBe(file.info("wte.weight").byteLength);
  });

  test.skipIf(!hasFfi())("a cpu load of some tensors reads ahead those, not the whole file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-cpu-load-"));
    const MiB = 2 ** 20;
    const path = join(dir, "four.safetensors");
    await save(path, Object.fromEntries(["a", "b", "c", "d"].map((k, i) => [k, { dtype: "U8" as const, shape: [MiB], data: new Uint8Array(MiB).fill(i + 1) }])));
    using file = await open(path, { backend: "mmap" });
    const start = (file.source as MmapSource).pointer(0);
    const before = mappedBytes(start);
    using w = await toDevice(file, { device: "cpu", names: ["b", "c"] });
    // Time for a read-ahead of the wrong range to land, had one been asked for.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const mapped = mappedBytes(start) - before;
    expect(mapped).toBeGreaterThanOrEqual(2 * MiB);
    expect(mapped).toBeLessThan(2.5 * MiB);
    expect(w.toHost("c").every((b) => b === 3)).toBe(true);
    rmSync(dir, { recursive: true });
  });

  test("toDevice on a sharded checkpoint loads every shard", async () => {
    const want = expected("sharded/expected.json");
    using model = await openSharded(SHARDED);
    using w = await toDevice(model, { device: "auto" });
    expect([...w.keys()].sort()).toEqual(Object.keys(want).sort());
    for (const [name, t] of Object.entries(want)) expect(sha256(w.toHost(name)), name).toBe(t.sha256);
  });
});
