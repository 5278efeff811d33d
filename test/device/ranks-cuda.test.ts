/**
 * Tensor-parallel loads onto CUDA through the checking libcudart stand-in (DESIGN §9; see fakecudart.test.ts): each
 * rank's parts, gathered from their runs into the pinned ring or by 2-D copies from a registered mapping, copied
 * back must equal the cpu load's parts, with no violation and nothing left allocated.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ffiUnavailable } from "../../ffi/runtime.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { splitRuns } from "../../src/device/tp-plan.ts";
import { save } from "../../src/format/writer.ts";
import { buildFakeCudart, runUnderFakeCudart, type FakeCudartReport } from "../support/fakecudart.ts";
import { sha256 } from "../support/fixtures.ts";
import { GPT2_CONFIG, gpt2Tensors, LLAMA_CONFIG, llamaTensors } from "../support/tp-models.ts";
import type { ChildSpec, ErrorSeen, LoadSeen, LoadSpec } from "./fakecudart-child.ts";

const whyNot = ffiUnavailable() ?? "";

/** Small slots: parts straddle chunks, chunks hold runs of several tensors, long rows are cut. */
const RING = { slots: 2, slotBytes: 16 << 10 };
const MODES = { ring: RING, hostRegister: { ...RING, hostRegister: true } } as const;

describe.skipIf(whyNot !== "")(`tensor-parallel CUDA loads through the checking stand-in${whyNot && ` (skipped: ${whyNot})`}`, { concurrent: true }, () => {
  let lib: string;
  let dir: string;
  const paths = { llama: "", gpt2: "" };
  beforeAll(async () => {
    lib = buildFakeCudart();
    dir = mkdtempSync(join(tmpdir(), "tensormap-ranks-cuda-"));
    for (const [plan, tensors, config] of [["llama", llamaTensors(2), LLAMA_CONFIG], ["gpt2", gpt2Tensors(), GPT2_CONFIG]] as const) {
      mkdirSync(join(dir, plan));
      paths[plan] = join(dir, plan, "model.safetensors");
      await save(paths[plan], tensors);
      writeFileSync(join(dir, plan, "config.json"), JSON.stringify(config));
    }
  });
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

  function expectClean(r: FakeCudartReport) {
    const { violations, first, pending_ops, races, faults, source_modified_in_flight, leaked_device_bytes, leaked_pinned_bytes, leaked_registered, live_streams, live_events, pageable_async_copies } = r;
    expect({ violations, first, pending_ops, races, faults, source_modified_in_flight, leaked_device_bytes, leaked_pinned_bytes, leaked_registered, live_streams, live_events, pageable_async_copies }).toEqual({
      violations: 0,
      first: [],
      pending_ops: 0,
      races: 0,
      faults: 0,
      source_modified_in_flight: 0,
      leaked_device_bytes: 0,
      leaked_pinned_bytes: 0,
      leaked_registered: 0,
      live_streams: 0,
      live_events: 0,
      pageable_async_copies: 0,
    });
  }

  async function run(loads: LoadSpec[], settings: Record<string, string> = {}): Promise<{ seen: LoadSeen[]; report: FakeCudartReport }> {
    const r = await runUnderFakeCudart(lib, dir, "test/device/fakecudart-child.ts", [JSON.stringify({ loads } satisfies ChildSpec)], settings);
    expect(r.status, r.stderr).toBe(0);
    expect(r.reports.length, r.stderr).toBe(1);
    return { seen: JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads as LoadSeen[], report: r.reports[0]! };
  }

  describe.each([2, 4])("world size %i", (worldSize) => {
    test.each(["llama", "gpt2"] as const)("%s: every rank's parts copied back equal its cpu parts, through the ring and by 2-D copies from a registered mapping", async (plan) => {
      const path = paths[plan];
      for (const [mode, options] of Object.entries(MODES)) {
        const loads = Array.from({ length: worldSize }, (_, rank) => ({ path, release: "free" as const, options: { device: "cuda:0", rank, worldSize, plan, ...options } }));
        const { seen, report } = await run(loads);
        expectClean(report);
        let split = 0;
        for (let rank = 0; rank < worldSize; rank++) {
          const load = seen[rank]!;
          if (!load.ok) throw new Error(`${mode}, rank ${rank}: ${load.error.code}: ${load.error.message}`);
          using cpu = await loadToDevice(path, { device: "cpu", rank, worldSize, plan });
          expect(load.bytes).toBe(cpu.bytes);
          expect(load.tensors.map((t) => t.name)).toEqual(cpu.keys());
          for (const t of load.tensors) {
            const want = cpu.get(t.name);
            if (want.split?.dim === 1) split++;
            expect({ mode, name: t.name, shape: t.shape, byteLength: t.byteLength, sha256: t.sha256 }).toEqual({ mode, name: t.name, shape: want.shape, byteLength: want.byteLength, sha256: sha256(cpu.toHost(t.name)) });
          }
        }
        // Strided (dim-1) parts were among them.
        expect(split).toBeGreaterThanOrEqual(worldSize * 4);
        // Bytes copied to the device: each rank's share, not the whole tensors.
        expect(report.bytes_h2d).toBe(seen.reduce((a, l) => a + (l.ok ? l.bytes : 0), 0));
        if (mode === "hostRegister") {
          // No pinned ring (no CPU copy at all); the parts' spans pinned apart, several per file.
          expect(report.pinned_allocs_total).toBe(0);
          expect(report.registrations_total).toBeGreaterThan(2 * worldSize);
        }
      }
    });
  });

  test('device "cuda" is the local rank\'s GPU', async () => {
    const { seen, report } = await run([{ path: paths.llama, release: "free", options: { device: "cuda", rank: 1, worldSize: 2, plan: "llama" } }], { FAKECUDART_DEVICES: "2" });
    expectClean(report);
    const [onLocal] = seen;
    expect(onLocal!.ok && onLocal!.device).toBe("cuda:1");
    expect(onLocal!.ok && onLocal!.tensors.every((t) => t.ptrDevice === (t.byteLength ? 1 : null))).toBe(true);
  });

  test.each(Object.keys(MODES) as Array<keyof typeof MODES>)("cold cache, %s: each rank reads from storage its share plus a page per run, nothing past it", async (mode) => {
    // Rows of 32 KiB: a row-parallel part at 4 ranks is a run of 8 KiB every 32 KiB.
    const config = { ...LLAMA_CONFIG, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 16384, vocab_size: 4096 };
    mkdirSync(join(dir, `cold-${mode}`));
    const path = join(dir, `cold-${mode}`, "model.safetensors");
    await save(path, llamaTensors(1, config));
    writeFileSync(join(dir, `cold-${mode}`, "config.json"), JSON.stringify(config));
    const worldSize = 4;
    const loads = Array.from({ length: worldSize }, (_, rank) => ({ path, cold: true, release: "free" as const, options: { device: "cuda:0", rank, worldSize, plan: "llama" as const, ...MODES[mode] } }));
    const { seen, report } = await run(loads);
    expectClean(report);
    const page = 4096;
    for (const [rank, load] of seen.entries()) {
      if (!load.ok) throw new Error(`rank ${rank}: ${load.error.code}: ${load.error.message}`);
      const runs = load.tensors.reduce((a, t) => a + splitRuns(t.name, t.fullShape!, 16, t.split ?? null).runs.length, 0);
      // The header's pages, read at open, besides.
      const allowed = load.bytes + runs * page + 16 * page;
      expect(load.readBytes, `rank ${rank}: read ${load.readBytes}, share ${load.bytes}, ${runs} runs`).toBeLessThanOrEqual(allowed);
      expect(load.readBytes).toBeGreaterThanOrEqual(load.bytes * 0.9);
    }
  });

  function expectCudaError(e: ErrorSeen, call: RegExp) {
    expect([e.isSafetensorsError, e.code]).toEqual([true, "CudaError"]);
    expect(e.message).not.toMatch(/\n/);
    expect(e.call).toMatch(call);
    expect(e.message.startsWith(`${e.call} failed: `)).toBe(true);
  }

  test.each([0, 5])("a cudaMemcpy2DAsync failing (call %i, copies still queued) is a clean CudaError, everything freed", async (k) => {
    const options = { device: "cuda:0", rank: 1, worldSize: 2, plan: "llama" as const, ...MODES.hostRegister };
    const { seen, report } = await run([{ path: paths.llama, options }], { FAKECUDART_FAIL: `cudaMemcpy2DAsync:${k}`, FAKECUDART_DELAY_MIN_US: "1000" });
    const load = seen[0]!;
    if (load.ok) throw new Error("the load succeeded");
    expectCudaError(load.error, /^cudaMemcpy2DAsync\(/);
    expect(report.injected_failures).toBe(1);
    expectClean(report);
    expect([report.leaked_device_allocs, report.leaked_registered_bytes]).toEqual([0, 0]);
  });
});
