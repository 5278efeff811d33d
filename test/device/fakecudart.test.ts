/**
 * The CUDA pipeline on every run, without a GPU. Each load runs in a child process (fakecudart-child.ts) against
 * the checking libcudart stand-in (DESIGN §9), which runs every copy later on a thread per stream, reading its
 * source when it runs, checks every pointer against live allocations, and writes a report at exit: violations
 * (a ring slot refilled before its copy ran, a free while a copy is in flight, out-of-bounds or cross-device
 * copies), leaks, and counts. Every tensor copied back must hash like the file's bytes, and every run must end
 * with no violation and nothing left allocated.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ffiUnavailable, runtime } from "../../ffi/runtime.ts";
import { save } from "../../src/format/writer.ts";
import { buildFakeCudart, runUnderFakeCudart, type FakeCudartReport } from "../support/fakecudart.ts";
import { expected, fixture, sha256, type Expected } from "../support/fixtures.ts";
import type { ChildSpec, ErrorSeen, LoadSeen, LoadSpec } from "./fakecudart-child.ts";

const CHILD = "test/device/fakecudart-child.ts";
const TINY = fixture("safetensors/tiny-gpt2.safetensors");
const DTYPES = fixture("safetensors/all-dtypes.safetensors");
const SHARDED = fixture("sharded");
const SHARDS = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"].map((f) => join(SHARDED, f));

/** Each tensor's dtype, shape and sha256 of its data bytes, read from the files here (not by tensormap). */
function fromFiles(...paths: string[]): Record<string, Expected> {
  const out: Record<string, Expected> = {};
  for (const path of paths) {
    const b = readFileSync(path);
    const n = Number(b.readBigUInt64LE(0));
    const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    for (const [name, t] of Object.entries(header)) {
      if (name === "__metadata__") continue;
      const [start, end] = t.data_offsets;
      out[name] = { dtype: t.dtype, shape: t.shape, nbytes: end - start, sha256: sha256(b.subarray(8 + n + start, 8 + n + end)) };
    }
  }
  return out;
}

const want = { tiny: fromFiles(TINY), dtypes: fromFiles(DTYPES), sharded: fromFiles(...SHARDS) };
const LISTINGS = { tiny: "safetensors/tiny-gpt2.expected.json", dtypes: "safetensors/all-dtypes.expected.json", sharded: "sharded/expected.json" } as const;
/** Names in the first and the last shard, so a names load skips the middle one. */
const PICKED = ["wte.weight", "h.0.attn.c_attn.bias", "h.2.mlp.c_fc.weight"];

type Layout = [name: string, dtype: "U8" | "F32", bytes: number][];

/**
 * Checkpoints generated for the ring, with bytes that differ everywhere (so a stale slot shows) and odd sizes (so
 * chunks straddle tensors and tensors straddle chunks). `ring` goes about nine times round 2 slots of 64 KiB and
 * holds an empty tensor; `wide` fills 4 MiB slots with 4 reader threads at once (1 MiB each), two and a half times round.
 */
const LAYOUTS: Record<"ring" | "wide", Layout> = {
  ring: [
    ["a", "U8", 300_001],
    ["b", "U8", 7],
    ["empty", "U8", 0],
    ["c", "F32", 196_708],
    ["d", "U8", 4096],
    ["e", "U8", 500_003],
  ],
  wide: [
    ["x", "U8", 7_000_001],
    ["y", "F32", 6_000_000],
    ["z", "U8", 4_500_003],
  ],
};
const RING = { slots: 2, slotBytes: 64 << 10 };
const WIDE = { slots: 2, slotBytes: 4 << 20 };

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const whyNot = ffiUnavailable() ?? "";

describe.skipIf(whyNot !== "")(`CUDA loads through the checking libcudart stand-in${whyNot && ` (skipped: ${whyNot})`}`, { concurrent: true }, () => {
  let lib: string;
  let dir: string;
  const generated = {} as Record<keyof typeof LAYOUTS, { path: string; tensors: Record<string, Expected> }>;

  beforeAll(async () => {
    lib = buildFakeCudart();
    dir = mkdtempSync(join(tmpdir(), "tensormap-fakecudart-"));
    let seed = 0;
    for (const [which, layout] of Object.entries(LAYOUTS) as [keyof typeof LAYOUTS, Layout][]) {
      const path = join(dir, `${which}.safetensors`);
      const tensors: Record<string, Expected> = {};
      const data = Object.fromEntries(
        layout.map(([name, dtype, bytes]) => {
          const bytesOf = pattern(bytes, ++seed);
          tensors[name] = { dtype, shape: [dtype === "F32" ? bytes / 4 : bytes], nbytes: bytes, sha256: sha256(bytesOf) };
          return [name, { dtype, shape: tensors[name]!.shape, data: bytesOf }];
        }),
      );
      await save(path, data);
      generated[which] = { path, tensors };
    }
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs one child; it must end normally and leave exactly one report, which must be clean (checked first: its
   * description of a violation says more than a wrong byte) unless `clean` is false.
   */
  async function run(spec: ChildSpec, settings: Record<string, string> = {}, clean = true): Promise<{ loads: LoadSeen[]; report: FakeCudartReport }> {
    const r = await runUnderFakeCudart(lib, dir, CHILD, [JSON.stringify(spec)], settings);
    const context = `child status ${r.status}, signal ${r.signal}, stderr:\n${r.stderr}`;
    expect(r.status, context).toBe(0);
    expect(r.reports.length, context).toBe(1);
    // Bun ends with quick_exit(), Deno with exit(): either way the report is the one written at the end.
    expect(r.reports[0]!.reason).toBe(runtime === "bun" ? "quick_exit" : "exit");
    if (clean) expectClean(r.reports[0]!);
    return { loads: JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads, report: r.reports[0]! };
  }

  /** Nothing misused, nothing left allocated, nothing still queued; warnings only for the failures injected. */
  function expectClean(report: FakeCudartReport) {
    const { violations, first, pending_ops, source_modified_in_flight, races, faults } = report;
    expect({ violations, first, pending_ops, source_modified_in_flight, races, faults }).toEqual({
      violations: 0,
      first: [],
      pending_ops: 0,
      source_modified_in_flight: 0,
      races: 0,
      faults: 0,
    });
    const { leaked_device_bytes, leaked_device_allocs, leaked_pinned_bytes, leaked_pinned_allocs, leaked_registered, leaked_registered_bytes, live_streams, live_events } = report;
    expect({ leaked_device_bytes, leaked_device_allocs, leaked_pinned_bytes, leaked_pinned_allocs, leaked_registered, leaked_registered_bytes, live_streams, live_events }).toEqual({
      leaked_device_bytes: 0,
      leaked_device_allocs: 0,
      leaked_pinned_bytes: 0,
      leaked_pinned_allocs: 0,
      leaked_registered: 0,
      leaked_registered_bytes: 0,
      live_streams: 0,
      live_events: 0,
    });
    // No pageable async copy (the ring or the registration was bypassed) and no read of another device's memory.
    expect(report.warnings_first.filter((w) => !/injected failure/.test(w))).toEqual([]);
    expect(report.warnings).toBe(report.injected_failures);
    expect(report.pageable_async_copies).toBe(0);
  }

  /** The load succeeded on `device` with exactly `names` of `from`, each with the reference bytes, dtype and shape. */
  function expectLoaded(load: LoadSeen, from: Record<string, Expected>, device = "cuda:0", names = Object.keys(from)): Extract<LoadSeen, { ok: true }> {
    if (!load.ok) throw new Error(`load failed: ${load.error.code}: ${load.error.message}`);
    expect(load.device).toBe(device);
    expect(load.toHostError).toBeNull();
    expect(load.tensors.map((t) => t.name).sort()).toEqual([...names].sort());
    for (const t of load.tensors) {
      const w = from[t.name]!;
      expect({ name: t.name, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength, device: t.device, sha256: t.sha256 }).toEqual({
        name: t.name,
        dtype: w.dtype,
        shape: w.shape,
        byteLength: w.nbytes,
        device,
        sha256: w.sha256,
      });
      expect(t.ptrDevice, t.name).toBe(t.byteLength ? Number(device.slice("cuda:".length)) : null);
    }
    expect(load.bytes).toBe(names.reduce((a, n) => a + from[n]!.nbytes, 0));
    return load;
  }

  /** Progress comes in order, only grows, names the files in load order and ends at the total. */
  function expectProgress(load: LoadSeen, files: string[]) {
    if (!load.ok) throw new Error("load failed");
    const p = load.progress;
    expect(p.length).toBeGreaterThan(0);
    for (let i = 0; i < p.length; i++) {
      expect(p[i]!.bytesTotal).toBe(load.bytes);
      if (i) expect(p[i]!.bytesDone).toBeGreaterThan(p[i - 1]!.bytesDone);
    }
    expect(p.at(-1)!.bytesDone).toBe(load.bytes);
    const order = p.map((e) => e.file).filter((f, i, all) => f !== all[i - 1]);
    expect(order).toEqual(files);
  }

  /** A failed CUDA call surfaces as one clean CudaError line naming the call. */
  function expectCudaError(e: ErrorSeen, call: RegExp) {
    expect(e.isSafetensorsError).toBe(true);
    expect(e.code).toBe("CudaError");
    expect(e.message).not.toMatch(/\n/);
    expect(e.call).toMatch(call);
    expect(e.message.startsWith(`${e.call} failed: `)).toBe(true);
  }

  const sum = (from: Record<string, Expected>, names = Object.keys(from)) => names.reduce((a, n) => a + from[n]!.nbytes, 0);

  test("the bytes expected, read here from the files, agree with the reference listings", () => {
    for (const [which, listing] of Object.entries(LISTINGS) as [keyof typeof want, string][]) {
      const listed = expected(listing);
      expect(Object.keys(listed).length).toBeGreaterThan(0);
      for (const [name, t] of Object.entries(listed)) expect(want[which][name], name).toEqual({ dtype: t.dtype, shape: t.shape, nbytes: t.nbytes, sha256: t.sha256 });
    }
  });

  test("one allocation per file (the default): every tensor byte-identical, 0 violations, 0 leaks", async () => {
    const { loads, report } = await run({ loads: [{ path: TINY, options: { device: "cuda:0" } }, { path: DTYPES, options: { device: "cuda" } }] });
    expectLoaded(loads[0]!, want.tiny);
    expectLoaded(loads[1]!, want.dtypes);
    expect(report.device_allocs_total).toBe(2);
    expect(report.bytes_h2d).toBe(sum(want.tiny) + sum(want.dtypes));
    expect(report.bytes_d2h).toBe(report.bytes_h2d);
  });

  test("one allocation per tensor (perTensor): none for the empty tensor", async () => {
    const { loads, report } = await run({ loads: [{ path: DTYPES, options: { device: "cuda:0", perTensor: true } }] });
    expectLoaded(loads[0]!, want.dtypes);
    const nonEmpty = Object.values(want.dtypes).filter((t) => t.nbytes > 0).length;
    expect(nonEmpty).toBeLessThan(Object.keys(want.dtypes).length);
    expect(report.device_allocs_total).toBe(nonEmpty);
  });

  test("hostRegister: the copy engine reads the registered mapping, one registration per file, no pinned ring", async () => {
    const { loads, report } = await run({
      loads: [
        { path: SHARDED, options: { device: "cuda:0", hostRegister: true } },
        { path: DTYPES, options: { device: "cuda:0", hostRegister: true, perTensor: true } },
      ],
    });
    expectLoaded(loads[0]!, want.sharded);
    expectLoaded(loads[1]!, want.dtypes);
    expect(report.registrations_total).toBe(SHARDS.length + 1);
    expect(report.pinned_allocs_total).toBe(0);
  });

  test("a sharded folder, by path (loadToDevice) and open (toDevice): one allocation per shard; the open checkpoint outlives the tensors", async () => {
    const { loads, report } = await run({
      loads: [
        { path: SHARDED, options: { device: "cuda:0" } },
        { path: SHARDED, via: "toDevice", options: { device: "cuda:0" }, release: "dispose" },
      ],
    });
    for (const load of loads) expectProgress(expectLoaded(load, want.sharded), SHARDS);
    expect(loads[1]!.ok && loads[1]!.fileAfterFree).toBe(true);
    expect(report.device_allocs_total).toBe(2 * SHARDS.length);
  });

  test("names: only the named tensors are allocated and copied, shards without one are skipped; an unknown name allocates nothing", async () => {
    const { loads, report } = await run({
      loads: [
        { path: SHARDED, options: { device: "cuda:0", names: PICKED } },
        { path: SHARDED, options: { device: "cuda:0", names: [...PICKED, "nope"] } },
      ],
    });
    expectProgress(expectLoaded(loads[0]!, want.sharded, "cuda:0", PICKED), [SHARDS[0]!, SHARDS[2]!]);
    const unknown = loads[1]!;
    expect(!unknown.ok && [unknown.error.code, unknown.progress.length]).toEqual(["TensorNotFound", 0]);
    expect(report.device_allocs_total).toBe(2);
    expect(report.bytes_h2d).toBe(sum(want.sharded, PICKED));
  });

  test("a PyTorch checkpoint loads from its zip entries; one with strided views is refused before anything is allocated", async () => {
    const torch = expected("torch/pytorch_model.expected.json");
    const { loads, report } = await run({
      loads: [
        { path: fixture("torch/pytorch_model.bin"), options: { device: "cuda:0" } },
        { path: fixture("torch/state-dict.pt"), options: { device: "cuda:0" } },
      ],
    });
    expectLoaded(loads[0]!, torch);
    const strided = loads[1]!;
    expect(!strided.ok && strided.error.code).toBe("InvalidArgument");
    expect(report.device_allocs_total).toBe(1);
  });

  test.each([
    ["pinned slots, one allocation per file", "ring", RING],
    ["pinned slots, one allocation per tensor", "ring", { ...RING, perTensor: true }],
    ["4 MiB slots, each filled by 4 reader threads at once", "wide", { ...WIDE, threads: 4 }],
    ["a registered mapping, which the ring only paces", "ring", { ...RING, hostRegister: true }],
  ] as const)("a checkpoint that cycles the ring several times (%s): every byte lands, no source changed under a queued copy", async (_, which, mode) => {
    const { path, tensors } = generated[which];
    const { loads, report } = await run({ loads: [{ path, options: { device: "cuda:0", ...mode } }] });
    const load = expectLoaded(loads[0]!, tensors);
    expectProgress(load, [path]);
    // One progress step per chunk: the ring went round at least twice.
    expect(load.progress.length).toBeGreaterThanOrEqual(2 * mode.slots);
    expect(report.async_copies).toBeGreaterThanOrEqual(load.progress.length);
  });

  test("the pinned ring is pinned once per device and reused by later loads that fit it; releasePinnedRings frees it, and exit frees the one kept", async () => {
    const { path, tensors } = generated.ring;
    const { loads, report } = await run({
      loads: [
        { path: TINY, options: { device: "cuda:0" } }, // pins 4 slots of 24 KiB
        { path: DTYPES, options: { device: "cuda:0" } }, // fits: reused
        { path, options: { device: "cuda:0", ...RING } }, // 2 slots: pins again
        { path, options: { device: "cuda:0", ...RING }, releaseRings: "after" }, // reused, then freed
        { path: TINY, options: { device: "cuda:0" } }, // pins again; kept until exit
      ],
    });
    [want.tiny, want.dtypes, tensors, tensors, want.tiny].forEach((from, i) => expectLoaded(loads[i]!, from));
    expect(report.pinned_allocs_total).toBe(3);
  });

  test("releasePinnedRings while a load runs leaves that load's ring alone until the load is done", async () => {
    const { path, tensors } = generated.ring;
    const { loads } = await run({
      loads: [
        { path, options: { device: "cuda:0", ...RING }, releaseRings: "during" },
        { path, options: { device: "cuda:0", ...RING } },
      ],
    });
    expectLoaded(loads[0]!, tensors);
    expectLoaded(loads[1]!, tensors);
  });

  test("toHost copies back, free and dispose release everything, and the tensors are gone after; tensors kept show as leaks", async () => {
    const { loads, report } = await run({
      loads: [
        { path: TINY, options: { device: "cuda:0" }, release: "free" },
        { path: TINY, options: { device: "cuda:0" }, release: "dispose" },
        { path: DTYPES, options: { device: "cuda:0", perTensor: true, names: ["int8", "uint8"] }, release: "keep" },
      ],
    }, {}, false);
    for (const load of loads.slice(0, 2)) {
      expectLoaded(load, want.tiny);
      expect(load.ok && load.afterFree?.code).toBe("Closed");
    }
    expectLoaded(loads[2]!, want.dtypes, "cuda:0", ["int8", "uint8"]);
    // The report sees exactly what was not freed: the kept load's two allocations, and nothing else.
    expect([report.violations, report.leaked_device_allocs, report.leaked_pinned_allocs, report.live_streams]).toEqual([0, 2, 0, 0]);
    expect(report.bytes_d2h).toBe(2 * sum(want.tiny) + sum(want.dtypes, ["int8", "uint8"]));
  });

  /** Runs `spec` once per failing call of a family, k = 0, 1, … until the load succeeds; returns that k. */
  async function failEach(spec: LoadSpec, setting: (k: number) => Record<string, string>, call: RegExp, from: Record<string, Expected>): Promise<number> {
    for (let k = 0; k < 64; k++) {
      const { loads, report } = await run({ loads: [spec] }, setting(k));
      const load = loads[0]!;
      if (load.ok) {
        expectLoaded(load, from, spec.options?.device, spec.options?.names);
        expect(report.injected_failures).toBe(0);
        return k;
      }
      expectCudaError(load.error, call);
      expect(report.injected_failures).toBe(1);
      // A checkpoint the caller opened is the caller's: a failed load leaves it readable.
      if (spec.via === "toDevice") expect(load.fileAfterFailure).toBe(true);
    }
    throw new Error("the load never succeeded");
  }

  test.each([
    ["one allocation per shard", { device: "cuda:0" }, SHARDS.length],
    ["one allocation per tensor, across shards", { device: "cuda:0", perTensor: true, names: PICKED }, PICKED.length],
    ["registered mappings, one allocation per shard, from an open checkpoint (toDevice)", { device: "cuda:0", hostRegister: true }, SHARDS.length, "toDevice"],
  ] as const)("a cudaMalloc failing at each allocation point (%s) frees everything and raises a clean CudaError", async (_, options, allocations, via?: "toDevice") => {
    const succeededAt = await failEach({ path: SHARDED, options, via }, (k) => ({ FAKECUDART_FAIL_MALLOC_AFTER: String(k) }), /^cudaMalloc\(/, want.sharded);
    expect(succeededAt).toBe(allocations);
  });

  test.each([
    ["cudaHostAlloc", "the pinned ring", { device: "cuda:0", ...RING }, /^cudaHostAlloc\(/],
    ["cudaStreamCreate", "the ring's stream", { device: "cuda:0", ...RING }, /^cudaStreamCreateWithFlags$/],
    ["cudaEventCreate", "each slot's event", { device: "cuda:0", ...RING }, /^cudaEventCreateWithFlags$/],
    ["cudaHostRegister", "the registered mapping", { device: "cuda:0", ...RING, hostRegister: true }, /^cudaHostRegister\(/],
  ])("a %s failing at each call (%s) frees everything and raises a clean CudaError", async (family, _, options, call) => {
    const succeededAt = await failEach({ path: generated.ring.path, options }, (k) => ({ FAKECUDART_FAIL: `${family}:${k}` }), call, generated.ring.tensors);
    expect(succeededAt).toBeGreaterThan(0);
  });

  test.each([
    ["cudaMemcpyAsync", { device: "cuda:0", ...RING }, /^cudaMemcpyAsync\(/],
    ["cudaEventRecord", { device: "cuda:0", ...RING, perTensor: true }, /^cudaEventRecord$/],
    ["cudaMemcpyAsync", { device: "cuda:0", ...RING, hostRegister: true }, /^cudaMemcpyAsync\(/],
  ])("a %s failing with the ring full of queued copies waits for them before freeing (%o)", async (family, options, call) => {
    // Call 6: past the first round of the ring, so both slots have copies queued when it fails.
    const { loads, report } = await run({ loads: [{ path: generated.ring.path, options }] }, { FAKECUDART_FAIL: `${family}:5`, FAKECUDART_DELAY_MIN_US: "1000" });
    const load = loads[0]!;
    expect(load.ok).toBe(false);
    if (!load.ok) expectCudaError(load.error, call);
    expect(report.injected_failures).toBe(1);
  });

  test("a failing copy back (toHost) is a clean CudaError, and free still releases everything", async () => {
    const { loads, report } = await run({ loads: [{ path: TINY, options: { device: "cuda:0" } }] }, { FAKECUDART_FAIL: "cudaMemcpy:3" });
    const load = loads[0]!;
    expect(load.ok).toBe(true);
    if (load.ok) {
      expectCudaError(load.toHostError!, /^cudaMemcpy\(.* to host\)$/);
      expect(load.afterFree?.code).toBe("Closed");
    }
    expect(report.injected_failures).toBe(1);
  });

  test("two devices: concurrent loads to cuda:0 and cuda:1 put each file's allocations and copies on its own device", async () => {
    // The loads take turns at every await, each switching the thread's current device. Allocations are checked by
    // pointer; a copy into one device's memory on another's stream, or an event recorded across devices, is a
    // violation, and a copy back from the wrong device a warning (peer access).
    const { loads, report } = await run(
      {
        concurrent: true,
        loads: [
          { path: generated.ring.path, options: { device: "cuda:0", ...RING } },
          { path: SHARDED, options: { device: "cuda:1", ...RING, perTensor: true } },
          { path: generated.ring.path, options: { device: "cuda:1", ...RING, hostRegister: true } },
          { path: SHARDED, options: { device: "cuda:0", ...RING, hostRegister: true } },
        ],
      },
      { FAKECUDART_DEVICES: "2" },
    );
    expectLoaded(loads[0]!, generated.ring.tensors, "cuda:0");
    expectLoaded(loads[1]!, want.sharded, "cuda:1");
    expectLoaded(loads[2]!, generated.ring.tensors, "cuda:1");
    expectLoaded(loads[3]!, want.sharded, "cuda:0");
    expect(report.devices).toBe(2);
  });
});
