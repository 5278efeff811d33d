import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { saveSharded } from "../../src/checkpoint/save.ts";
import { open, openCheckpoint } from "../../src/checkpoint/open.ts";
import { loadToDevice, type DeviceLoadOptions } from "../../src/device/load.ts";
import type { HostTensor } from "../../src/device/tensors.ts";
import { splitRuns } from "../../src/device/tp-plan.ts";
import { DTYPES } from "../../src/format/dtypes.ts";
import { save } from "../../src/format/writer.ts";
import { assemble } from "../support/assemble.ts";
import { withEnv } from "../support/env.ts";
import { GPT2_CONFIG, gpt2Tensors, LLAMA_CONFIG, llamaTensors, tensor } from "../support/tp-models.ts";
import { evict, storageReads } from "../io/smaps.ts";

let dir: string;
let llama: string;
let gpt2: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tensormap-ranks-"));
  llama = join(dir, "llama", "model.safetensors");
  await saveSharded(join(dir, "llama"), llamaTensors(2), { maxShardSize: 1 << 30 });
  writeFileSync(join(dir, "llama", "config.json"), JSON.stringify(LLAMA_CONFIG));
  // GPT-2 sharded: a rank's parts come from several files.
  gpt2 = join(dir, "gpt2");
  await saveSharded(gpt2, gpt2Tensors(), { maxShardSize: 400_000 });
  writeFileSync(join(gpt2, "config.json"), JSON.stringify(GPT2_CONFIG));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function rejection(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(Error);
  return e as { code: string; message: string };
}

/** Every rank's load, its tensors by name. */
async function loadRanks(path: string, worldSize: number, opts: DeviceLoadOptions) {
  const ranks = [];
  for (let rank = 0; rank < worldSize; rank++) {
    using w = await loadToDevice(path, { ...opts, device: "cpu", rank, worldSize });
    ranks.push(new Map([...w].map(([name, t]) => [name, t as HostTensor])));
  }
  return ranks;
}

describe.each([1, 2, 4, 8])("world size %i", (worldSize) => {
  test.each(["llama", "gpt2"] as const)("%s: the ranks' parts put back together are the full tensors, byte for byte", async (plan) => {
    const path = plan === "llama" ? llama : gpt2;
    const ranks = await loadRanks(path, worldSize, { plan });
    using whole = await openCheckpoint(path);
    let split = 0;
    for (const name of whole.keys()) {
      const full = whole.tensor(name);
      const parts = ranks.map((r) => r.get(name)!);
      for (const t of parts) {
        expect(t.fullShape, name).toEqual(full.shape);
        expect(t.bytes.byteLength, name).toBe(t.byteLength);
        expect(t.byteLength, name).toBe(t.shape.reduce((a, b) => a * b, DTYPES.get(full.dtype)!.bits / 8));
        if (t.split === null) expect(t.shape).toEqual(full.shape);
      }
      if (parts.some((t) => t.split !== null) && worldSize > 1) split++;
      const { bytes, missing } = assemble(full.shape, DTYPES.get(full.dtype)!.bits / 8, parts.map((t) => ({ split: t.split ?? null, bytes: t.bytes })));
      expect(missing, name).toBe(0);
      expect(Buffer.from(bytes).equals(Buffer.from(full.bytes)), name).toBe(true);
    }
    // Something was split (world size 1: every tensor's part is all of it).
    if (worldSize > 1) expect(split).toBeGreaterThan(plan === "llama" ? 15 : 10);
  });
});

describe("the llama rules on a real load", () => {
  test("K/V heads replicated past their count: ranks sharing a head hold the same rows", async () => {
    const ranks = await loadRanks(llama, 4, { plan: "llama" });
    using whole = await open(join(dir, "llama", "model.safetensors"));
    const k = "model.layers.1.self_attn.k_proj.weight";
    const full = whole.tensor(k).bytes;
    const rowBytes = 256 * 2;
    ranks.forEach((r, rank) => {
      const head = Math.floor(rank / 2);
      expect(r.get(k)!.split).toEqual({ dim: 0, start: head * 32, end: head * 32 + 32 });
      expect(r.get(k)!.shape).toEqual([32, 256]);
      expect(Buffer.from(r.get(k)!.bytes).equals(Buffer.from(full.subarray(head * 32 * rowBytes, (head + 1) * 32 * rowBytes)))).toBe(true);
    });
  });

  test("the vocabulary padded to 64: the last rank holds only the real rows", async () => {
    using w = await loadToDevice(llama, { device: "cpu", rank: 7, worldSize: 8, plan: "llama" });
    const t = w.get("lm_head.weight");
    expect([t.split, t.shape, t.fullShape]).toEqual([{ dim: 0, start: 896, end: 1000 }, [104, 256], [1000, 256]]);
  });

  test("UnevenSplit names the tensor", async () => {
    const e = await rejection(loadToDevice(llama, { device: "cpu", rank: 0, worldSize: 3, plan: "llama" }));
    expect(e.code).toBe("UnevenSplit");
    expect(e.message).toMatch(/^(lm_head|model\.embed_tokens)\.weight: the padded vocabulary of 1024 does not divide among 3 ranks$/);
  });

  test("config: given, missing (K/V need it), not JSON", async () => {
    await save(join(dir, "bare.safetensors"), { "model.layers.0.self_attn.k_proj.weight": tensor("BF16", 64, 256) });
    const file = join(dir, "bare.safetensors");
    const e = await rejection(loadToDevice(file, { device: "cpu", rank: 0, worldSize: 4, plan: "llama" }));
    expect([e.code, e.message]).toEqual(["InvalidArgument", expect.stringMatching(/k_proj\.weight: the llama plan needs num_key_value_heads/)]);
    using w = await loadToDevice(file, { device: "cpu", rank: 3, worldSize: 4, plan: "llama", config: LLAMA_CONFIG });
    expect(w.get("model.layers.0.self_attn.k_proj.weight").split).toEqual({ dim: 0, start: 32, end: 64 });
    writeFileSync(join(dir, "config.json"), "{ not json");
    const bad = await rejection(loadToDevice(file, { device: "cpu", rank: 0, worldSize: 2, plan: "llama" }));
    expect([bad.code, bad.message]).toEqual(["InvalidArgument", expect.stringMatching(new RegExp(`^${join(dir, "config.json")} is not JSON: `))]);
    rmSync(join(dir, "config.json"));
  });

  test("rank and world size from the launcher's environment", async () => {
    await withEnv({ RANK: "1", WORLD_SIZE: "2", LOCAL_RANK: "1" }, async () => {
      using w = await loadToDevice(llama, { device: "cpu", plan: "llama" });
      expect(w.get("model.layers.0.self_attn.o_proj.weight").split).toEqual({ dim: 1, start: 128, end: 256 });
    });
  });
});

describe.skipIf(runtime === "node")("each rank reads only its bytes from storage", () => {
  // Rows of 32 KiB: a row-parallel part at 4 ranks is a run of 8 KiB every 32 KiB.
  const config = { hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 16384, vocab_size: 4096 };

  test.each([2, 4, 8])("world size %i: read_bytes per rank ≤ its share plus a page per run", async (worldSize) => {
    const folder = mkdtempSync(join(dir, "cold-"));
    const path = join(folder, "model.safetensors");
    await save(path, llamaTensors(1, config as typeof LLAMA_CONFIG));
    writeFileSync(join(folder, "config.json"), JSON.stringify(config));
    using file = await open(path);
    const page = 4096;
    const header = file.entry(file.offsetKeys()[0]!).start;
    const fileBytes = file.source.size;
    const lines: string[] = [];
    for (let rank = 0; rank < worldSize; rank++) {
      evict(path);
      const before = storageReads();
      using w = await loadToDevice(path, { device: "cpu", rank, worldSize, plan: "llama" });
      const read = storageReads() - before;
      const share = w.bytes;
      const runs = [...w].reduce((a, [name, t]) => a + splitRuns(name, t.fullShape!, 16, t.split ?? null).runs.length, 0);
      const allowed = share + runs * page + Math.ceil(header / page) * page;
      lines.push(`rank ${rank}/${worldSize}: read ${read} of ${fileBytes}, share ${share}, runs ${runs}, allowed ${allowed}`);
      expect(read, lines.at(-1)).toBeLessThanOrEqual(allowed);
      expect(read, lines.at(-1)).toBeGreaterThanOrEqual(share * 0.9);
    }
    console.log(lines.join("\n"));
  });
});
