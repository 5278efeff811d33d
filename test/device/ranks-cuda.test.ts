/**
 * Tensor-parallel loads onto CUDA through the checking libcudart stand-in (DESIGN §9; see fakecudart.test.ts): each
 * rank's parts, gathered from their runs into the pinned ring, copied back must equal the cpu load's parts, with
 * no violation and nothing left allocated.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { save, type TensorData } from "../../src/format/writer.ts";
import { buildFakeCudart, runUnderFakeCudart, type FakeCudartReport } from "../support/fakecudart.ts";
import { sha256 } from "../support/fixtures.ts";
import type { ChildSpec, LoadSeen } from "./fakecudart-child.ts";

const CONFIG = { hidden_size: 128, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 1024, vocab_size: 300 };

function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) % 2 ** 31) >>> 16;
  return out;
}

function tensors(): Record<string, TensorData> {
  const h = CONFIG.hidden_size;
  const kv = (h / CONFIG.num_attention_heads) * CONFIG.num_key_value_heads;
  const shapes: Record<string, number[]> = {
    "model.embed_tokens.weight": [CONFIG.vocab_size, h],
    "model.layers.0.input_layernorm.weight": [h],
    "model.layers.0.self_attn.q_proj.weight": [h, h],
    "model.layers.0.self_attn.k_proj.weight": [kv, h],
    "model.layers.0.self_attn.v_proj.weight": [kv, h],
    "model.layers.0.self_attn.o_proj.weight": [h, h],
    "model.layers.0.mlp.gate_proj.weight": [CONFIG.intermediate_size, h],
    "model.layers.0.mlp.down_proj.weight": [h, CONFIG.intermediate_size],
    "lm_head.weight": [CONFIG.vocab_size, h],
  };
  let seed = 0;
  return Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, { dtype: "BF16" as const, shape, data: noise(2 * shape.reduce((a, b) => a * b, 1), ++seed) }]));
}

// The stand-in runs in a child of this runtime, a TypeScript script: Node 20 runs none.
const whyNot = runtime === "node" ? "Node 20 runs no TypeScript child" : "";

describe.skipIf(whyNot !== "")(`tensor-parallel CUDA loads through the checking stand-in${whyNot && ` (skipped: ${whyNot})`}`, () => {
  let lib: string;
  let dir: string;
  let path: string;
  beforeAll(async () => {
    lib = buildFakeCudart();
    dir = mkdtempSync(join(tmpdir(), "tensormap-ranks-cuda-"));
    mkdirSync(join(dir, "llama"));
    path = join(dir, "llama", "model.safetensors");
    await save(path, tensors());
    writeFileSync(join(dir, "llama", "config.json"), JSON.stringify(CONFIG));
  });
  afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

  function expectClean(r: FakeCudartReport) {
    const { violations, first, pending_ops, races, faults, leaked_device_bytes, leaked_pinned_bytes, live_streams, live_events, pageable_async_copies } = r;
    expect({ violations, first, pending_ops, races, faults, leaked_device_bytes, leaked_pinned_bytes, live_streams, live_events, pageable_async_copies }).toEqual({
      violations: 0,
      first: [],
      pending_ops: 0,
      races: 0,
      faults: 0,
      leaked_device_bytes: 0,
      leaked_pinned_bytes: 0,
      live_streams: 0,
      live_events: 0,
      pageable_async_copies: 0,
    });
  }

  test.each([2, 4])("world size %i: every rank's parts copied back equal its cpu parts", async (worldSize) => {
    // Small slots: parts straddle chunks and chunks hold runs of several tensors.
    const loads = Array.from({ length: worldSize }, (_, rank) => ({
      path,
      release: "free" as const,
      options: { device: "cuda:0", rank, worldSize, plan: "llama" as const, slots: 2, slotBytes: 16 << 10 },
    }));
    const r = await runUnderFakeCudart(lib, dir, "test/device/fakecudart-child.ts", [JSON.stringify({ loads } satisfies ChildSpec)]);
    expect(r.status, r.stderr).toBe(0);
    expectClean(r.reports[0]!);
    const seen = JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads as LoadSeen[];
    for (let rank = 0; rank < worldSize; rank++) {
      const load = seen[rank]!;
      if (!load.ok) throw new Error(`rank ${rank}: ${load.error.code}: ${load.error.message}`);
      using cpu = await loadToDevice(path, { device: "cpu", rank, worldSize, plan: "llama" });
      expect(load.bytes).toBe(cpu.bytes);
      expect(load.tensors.map((t) => t.name)).toEqual(cpu.keys());
      for (const t of load.tensors) {
        const want = cpu.get(t.name);
        expect({ name: t.name, shape: t.shape, byteLength: t.byteLength, sha256: t.sha256 }).toEqual({ name: t.name, shape: want.shape, byteLength: want.byteLength, sha256: sha256(cpu.toHost(t.name)) });
      }
    }
    // Bytes copied to the device: each rank's share, not the whole tensors.
    expect(r.reports[0]!.bytes_h2d).toBe(seen.reduce((a, l) => a + (l.ok ? l.bytes : 0), 0));
  });

  test('device "cuda" is the local rank\'s GPU; hostRegister is refused', async () => {
    const loads = [
      { path, release: "free" as const, options: { device: "cuda", rank: 1, worldSize: 2, plan: "llama" as const } },
      { path, options: { device: "cuda:0", rank: 0, worldSize: 2, plan: "llama" as const, hostRegister: true } },
    ];
    const r = await runUnderFakeCudart(lib, dir, "test/device/fakecudart-child.ts", [JSON.stringify({ loads } satisfies ChildSpec)], { FAKECUDART_DEVICES: "2" });
    expect(r.status, r.stderr).toBe(0);
    expectClean(r.reports[0]!);
    const [onLocal, registered] = JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads as LoadSeen[];
    expect(onLocal!.ok && onLocal!.device).toBe("cuda:1");
    expect(onLocal!.ok && onLocal!.tensors.every((t) => t.ptrDevice === (t.byteLength ? 1 : null))).toBe(true);
    expect(!registered!.ok && [registered!.error.code, registered!.error.message]).toEqual(["InvalidArgument", expect.stringMatching(/^hostRegister does not apply to tensor-parallel loads/)]);
  });
});
