import { describe, expect, test } from "vitest";
import { mappedSpans } from "../../src/device/plan.ts";
import { planGatherChunks, planPitchedCopies, planSplit, splitBlocks, splitPieces, splitRuns, type ModelConfig, type Split, type TensorParallelPlan } from "../../src/device/tp-plan.ts";
import { assemble } from "../support/assemble.ts";

const LLAMA: ModelConfig = { hidden_size: 256, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 512 };
const info = (...shape: number[]) => ({ dtype: "F32" as const, shape });
const split = (name: string, shape: number[], rank: number, worldSize: number, plan: TensorParallelPlan, config: ModelConfig | null = LLAMA) =>
  planSplit(name, info(...shape), { rank, worldSize }, plan, config);
const all = (name: string, shape: number[], worldSize: number, plan: TensorParallelPlan, config: ModelConfig | null = LLAMA) =>
  Array.from({ length: worldSize }, (_, r) => split(name, shape, r, worldSize, plan, config));

/** A tensor whose every 4-byte element is its own index: any misplaced byte shows. */
function indexed(shape: number[]): Uint8Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Uint8Array(Uint32Array.from({ length: n }, (_, i) => i).buffer);
}

/** Gathers a rank's part by the planner's byte runs, as the loader reads it. */
function gather(full: Uint8Array, shape: number[], s: Split | null): Uint8Array {
  const { runs, byteLength } = splitRuns("t", shape, 32, s);
  const out = new Uint8Array(byteLength);
  let at = 0;
  for (const [offset, length] of runs) out.set(full.subarray(offset, offset + length), (at += length) - length);
  expect(at).toBe(byteLength);
  return out;
}

/** Every rank's gathered part put back together is the whole tensor, every element held by some rank. */
function reassembles(shape: number[], splits: Array<Split | null>, what: string) {
  const full = indexed(shape);
  const { bytes, missing } = assemble(shape, 4, splits.map((s) => ({ split: s, bytes: gather(full, shape, s) })));
  expect(missing, what).toBe(0);
  expect(bytes.every((b, i) => b === full[i]), what).toBe(true);
}

const replays = (name: string, shape: number[], worldSize: number, plan: TensorParallelPlan, config: ModelConfig | null = LLAMA) =>
  reassembles(shape, all(name, shape, worldSize, plan, config), name);

/** 40 random 3-D tensors, each split among a random world (fused pieces and all): `each(shape, every rank's split)`. */
function randomSplits(seed: number, each: (shape: number[], splits: Split[]) => void) {
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let round = 0; round < 40; round++) {
    const w = 1 + rand(4);
    const parts = 1 + rand(3);
    const dim = rand(3);
    const shape = [1 + rand(4), 1 + rand(4), 1 + rand(4)];
    shape[dim] = parts * w * (1 + rand(3));
    const per = shape[dim]! / parts / w;
    each(shape, Array.from({ length: w }, (_, r) => ({ dim, start: r * per, end: (r + 1) * per, ...(parts > 1 ? { parts } : {}) })));
  }
}

describe("llama rules (vLLM's)", () => {
  test("q/k/v/gate/up split dim 0, o/down dim 1, norms replicated", () => {
    expect(all("model.layers.0.self_attn.q_proj.weight", [256, 256], 4, "llama")).toEqual([0, 1, 2, 3].map((r) => ({ dim: 0, start: 64 * r, end: 64 * r + 64 })));
    expect(split("model.layers.3.mlp.gate_proj.weight", [512, 256], 1, 2, "llama")).toEqual({ dim: 0, start: 256, end: 512 });
    expect(split("model.layers.3.mlp.up_proj.weight", [512, 256], 0, 2, "llama")).toEqual({ dim: 0, start: 0, end: 256 });
    expect(split("model.layers.0.self_attn.o_proj.weight", [256, 256], 3, 4, "llama")).toEqual({ dim: 1, start: 192, end: 256 });
    expect(split("model.layers.0.mlp.down_proj.weight", [256, 512], 1, 8, "llama")).toEqual({ dim: 1, start: 64, end: 128 });
    expect(split("model.layers.0.input_layernorm.weight", [256], 1, 8, "llama")).toBeNull();
    expect(split("model.norm.weight", [256], 0, 2, "llama")).toBeNull();
    expect(split("model.layers.0.self_attn.rotary_emb.inv_freq", [16], 0, 2, "llama")).toBeNull();
    // Qwen2's q/k/v biases follow their weights; a row-parallel bias is whole on every rank.
    expect(split("model.layers.0.self_attn.q_proj.bias", [256], 1, 2, "llama")).toEqual({ dim: 0, start: 128, end: 256 });
    expect(split("model.layers.0.self_attn.o_proj.bias", [256], 1, 2, "llama")).toBeNull();
  });

  test("K/V heads: split while there are enough, one replicated head per rank past that", () => {
    const kv = (w: number) => all("model.layers.0.self_attn.k_proj.weight", [64, 256], w, "llama");
    expect(kv(1)).toEqual([{ dim: 0, start: 0, end: 64 }]);
    expect(kv(2)).toEqual([{ dim: 0, start: 0, end: 32 }, { dim: 0, start: 32, end: 64 }]);
    // 4 ranks, 2 heads: replicas = 2, head = rank // 2.
    expect(kv(4).map((s) => s!.start)).toEqual([0, 0, 32, 32]);
    expect(kv(8).map((s) => s!.start)).toEqual([0, 0, 0, 0, 32, 32, 32, 32]);
    expect(kv(8).every((s) => s!.end - s!.start === 32)).toBe(true);
    // head_dim from the config when it says so (not hidden_size / heads).
    const config = { ...LLAMA, head_dim: 16 };
    expect(all("model.layers.0.self_attn.v_proj.weight", [32, 256], 4, "llama", config).map((s) => [s!.start, s!.end])).toEqual([[0, 16], [0, 16], [16, 32], [16, 32]]);
  });

  test("the vocabulary is padded to a multiple of 64; a rank's part holds only real rows", () => {
    // 65 rows pad to 128: 4 ranks of 32; rank 2 holds the one real row of its 32, rank 3 none.
    expect(all("lm_head.weight", [65, 32], 4, "llama").map((s) => [s!.start, s!.end])).toEqual([[0, 32], [32, 64], [64, 65], [65, 65]]);
    // 950 pads to 960: 16 ranks of 60.
    expect(split("lm_head.weight", [950, 32], 15, 16, "llama")).toEqual({ dim: 0, start: 900, end: 950 });
    expect(split("model.embed_tokens.weight", [1000, 32], 3, 4, "llama")).toEqual({ dim: 0, start: 768, end: 1000 });
    replays("lm_head.weight", [950, 4], 16, "llama");
    replays("lm_head.weight", [65, 4], 4, "llama");
  });

  test("UnevenSplit names the tensor", () => {
    const cases: Array<[string, number[], number, ModelConfig, RegExp]> = [
      ["model.layers.0.mlp.down_proj.weight", [256, 500], 8, LLAMA, /^model\.layers\.0\.mlp\.down_proj\.weight: dim 1 of 500 does not divide among 8 ranks$/],
      ["model.embed_tokens.weight", [1000, 32], 3, LLAMA, /^model\.embed_tokens\.weight: the padded vocabulary of 1024 does not divide among 3 ranks$/],
      ["model.layers.0.self_attn.k_proj.weight", [64, 256], 3, LLAMA, /^model\.layers\.0\.self_attn\.k_proj\.weight: replicating 2 K\/V heads/],
      ["model.layers.0.self_attn.k_proj.weight", [96, 256], 2, { ...LLAMA, num_key_value_heads: 3 }, /num_key_value_heads of 3 does not divide among 2 ranks/],
      ["model.layers.0.self_attn.q_proj.weight", [256, 256], 16, LLAMA, /num_attention_heads of 8 does not divide among 16 ranks/],
    ];
    for (const [name, shape, w, config, message] of cases) {
      expect(() => split(name, shape, 0, w, "llama", config), name).toThrow(expect.objectContaining({ code: "UnevenSplit", message: expect.stringMatching(message) }));
    }
  });

  test("K/V without head counts, a shape the config contradicts, or a bad rank: InvalidArgument", () => {
    expect(() => split("model.layers.0.self_attn.k_proj.weight", [64, 256], 0, 2, "llama", null)).toThrow(expect.objectContaining({ code: "InvalidArgument", message: expect.stringMatching(/needs num_key_value_heads/) }));
    expect(() => split("model.layers.0.self_attn.k_proj.weight", [128, 256], 0, 2, "llama")).toThrow(expect.objectContaining({ code: "InvalidArgument", message: expect.stringMatching(/128 rows, but config\.json says 2 K\/V heads of 32/) }));
    for (const [rank, w] of [[2, 2], [-1, 2], [0, 0], [0.5, 2]]) expect(() => split("model.norm.weight", [4], rank!, w!, "llama")).toThrow(expect.objectContaining({ code: "InvalidArgument" }));
  });

  test.each([1, 2, 4, 8])("every llama tensor's parts put back together at world size %i", (w) => {
    const shapes: Array<[string, number[]]> = [
      ["model.embed_tokens.weight", [100, 8]],
      ["model.layers.0.self_attn.q_proj.weight", [64, 16]],
      ["model.layers.0.self_attn.k_proj.weight", [16, 16]],
      ["model.layers.0.self_attn.o_proj.weight", [16, 64]],
      ["model.layers.0.mlp.down_proj.weight", [16, 32]],
      ["model.norm.weight", [16]],
    ];
    for (const [name, shape] of shapes) replays(name, shape, w, "llama", { hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2 });
  });
});

describe("gpt2 rules (Conv1D, [in, out])", () => {
  test("c_attn splits each of q, k, v on dim 1: three pieces per rank", () => {
    const s = split("h.0.attn.c_attn.weight", [64, 192], 1, 4, "gpt2", null);
    expect(s).toEqual({ dim: 1, start: 16, end: 32, parts: 3 });
    expect(splitPieces([64, 192], s!)).toEqual([[16, 32], [80, 96], [144, 160]]);
    expect(split("h.0.attn.c_attn.bias", [192], 3, 4, "gpt2", null)).toEqual({ dim: 0, start: 48, end: 64, parts: 3 });
  });

  test("c_fc column parallel on dim 1, the c_projs row parallel on dim 0, their biases whole", () => {
    expect(split("transformer.h.0.mlp.c_fc.weight", [64, 256], 1, 2, "gpt2", null)).toEqual({ dim: 1, start: 128, end: 256 });
    expect(split("h.0.mlp.c_fc.bias", [256], 1, 2, "gpt2", null)).toEqual({ dim: 0, start: 128, end: 256 });
    expect(split("h.0.attn.c_proj.weight", [64, 64], 1, 2, "gpt2", null)).toEqual({ dim: 0, start: 32, end: 64 });
    expect(split("h.0.mlp.c_proj.weight", [256, 64], 1, 2, "gpt2", null)).toEqual({ dim: 0, start: 128, end: 256 });
    expect(split("h.0.attn.c_proj.bias", [64], 1, 2, "gpt2", null)).toBeNull();
    expect(split("h.0.mlp.c_proj.bias", [64], 1, 2, "gpt2", null)).toBeNull();
    expect(split("wte.weight", [50257, 8], 7, 8, "gpt2", null)).toEqual({ dim: 0, start: 44016, end: 50257 });
    for (const name of ["wpe.weight", "h.0.ln_1.weight", "ln_f.bias", "h.0.attn.bias"]) expect(split(name, [64, 64], 1, 2, "gpt2", null), name).toBeNull();
  });

  test("n_head from the config must divide; c_attn's thirds must divide", () => {
    expect(() => split("h.0.attn.c_attn.weight", [64, 192], 0, 8, "gpt2", { n_head: 4 })).toThrow(expect.objectContaining({ code: "UnevenSplit", message: expect.stringMatching(/^h\.0\.attn\.c_attn\.weight: n_head of 4/) }));
    expect(() => split("h.0.attn.c_attn.weight", [64, 30], 0, 4, "gpt2", null)).toThrow(expect.objectContaining({ code: "UnevenSplit", message: "h.0.attn.c_attn.weight: each of 3 blocks of dim 1 of 10 does not divide among 4 ranks" }));
  });

  test.each([1, 2, 4, 8])("every gpt2 tensor's parts put back together at world size %i", (w) => {
    const shapes: Array<[string, number[]]> = [
      ["wte.weight", [77, 8]],
      ["h.0.attn.c_attn.weight", [16, 48]],
      ["h.0.attn.c_attn.bias", [48]],
      ["h.0.attn.c_proj.weight", [16, 16]],
      ["h.0.mlp.c_fc.weight", [16, 64]],
      ["h.0.mlp.c_proj.weight", [64, 16]],
      ["wpe.weight", [8, 16]],
    ];
    for (const [name, shape] of shapes) replays(name, shape, w, "gpt2", null);
  });
});

describe("custom plans", () => {
  test("patterns: the first match wins, unmatched names replicated", () => {
    const plan = { "*.wq": 0, "*.wo": 1, "*norm*": "replicate" as const, "*": 0 };
    expect(split("layers.0.wq", [8, 4], 1, 2, plan)).toEqual({ dim: 0, start: 4, end: 8 });
    expect(split("layers.0.wo", [8, 4], 1, 2, plan)).toEqual({ dim: 1, start: 2, end: 4 });
    expect(split("layers.0.attention_norm", [8], 1, 2, plan)).toBeNull();
    expect(split("tok_embeddings", [8, 4], 0, 2, plan)).toEqual({ dim: 0, start: 0, end: 4 });
    expect(split("layers.0.wq", [8, 4], 1, 2, { "layers.0.wk": 0 })).toBeNull();
    expect(() => split("layers.0.wo", [8, 3], 0, 2, plan)).toThrow(expect.objectContaining({ code: "UnevenSplit" }));
    expect(() => split("layers.0.wo", [8], 0, 2, plan)).toThrow(expect.objectContaining({ code: "InvalidArgument", message: "layers.0.wo: the plan splits dim 1, but the tensor has 1 dimensions" }));
  });

  test("a function of the name and info", () => {
    const plan = (name: string, i: { shape: number[] }) => (i.shape.length === 2 ? (name.endsWith("out") ? 1 : 0) : "replicate");
    expect(split("proj.out", [8, 4], 1, 2, plan)).toEqual({ dim: 1, start: 2, end: 4 });
    expect(split("proj.in", [8, 4], 1, 2, plan)).toEqual({ dim: 0, start: 4, end: 8 });
    expect(split("scale", [8], 1, 2, plan)).toBeNull();
  });
});

describe("splitRuns", () => {
  test("dim 0: one run; dim 1: a run per row; touching runs merge", () => {
    expect(splitRuns("w", [4, 6], 8, { dim: 0, start: 1, end: 3 }).runs).toEqual([[6, 12]]);
    expect(splitRuns("w", [4, 6], 8, { dim: 1, start: 3, end: 6 }).runs).toEqual([[3, 3], [9, 3], [15, 3], [21, 3]]);
    expect(splitRuns("w", [2, 6], 16, { dim: 1, start: 0, end: 1, parts: 3 }).runs).toEqual([[0, 2], [4, 2], [8, 2], [12, 2], [16, 2], [20, 2]]);
    // World size 1 of a fused tensor: q, k and v touch, rows touch: one run.
    expect(splitRuns("w", [2, 6], 16, { dim: 1, start: 0, end: 2, parts: 3 })).toEqual({ shape: [2, 6], runs: [[0, 24]], byteLength: 24 });
    expect(splitRuns("w", [2, 6], 16, { dim: 1, start: 0, end: 2, parts: 1 }).shape).toEqual([2, 2]);
    expect(splitRuns("w", [2, 6], 8, null).runs).toEqual([[0, 12]]);
    expect(splitRuns("w", [2, 3], 8, { dim: 1, start: 0, end: 1, parts: 3 }).runs).toEqual([[0, 6]]);
    expect(splitRuns("w", [5, 3], 8, { dim: 0, start: 5, end: 5 })).toEqual({ shape: [0, 3], runs: [], byteLength: 0 });
  });

  test("random 3-D splits replay element by element", () => {
    randomSplits(11, (shape, splits) => reassembles(shape, splits, `[${shape}] split ${JSON.stringify(splits[0])}, ${splits.length} ranks`));
  });
});

describe("planGatherChunks", () => {
  test("parts' runs pack into chunks, split where a chunk is full; every byte once, in order", () => {
    let seed = 5;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 40; round++) {
      const parts = Array.from({ length: 1 + rand(4) }, () => {
        let at = rand(100);
        return Array.from({ length: rand(5) }, (): [number, number] => {
          const run: [number, number] = [at, 1 + rand(30)];
          at += run[1] + 1 + rand(20);
          return run;
        });
      });
      const chunkBytes = 1 + rand(40);
      const chunks = planGatherChunks(parts, chunkBytes);
      // What each tensor's part receives, byte by byte: the file offset it came from.
      const got = parts.map(() => [] as number[]);
      for (const c of chunks) {
        expect(c.length).toBeLessThanOrEqual(chunkBytes);
        expect(c.runs.reduce((a, r) => a + r[1], 0)).toBe(c.length);
        expect(c.fileOffset).toBe(c.runs[0]![0]);
        const slot = c.runs.flatMap(([offset, length]) => Array.from({ length }, (_, k) => offset + k));
        let at = 0;
        for (const p of c.pieces) {
          expect(p.chunkOffset).toBe(at);
          expect(p.tensorOffset).toBe(got[p.tensor]!.length);
          got[p.tensor]!.push(...slot.slice(p.chunkOffset, p.chunkOffset + p.length));
          at += p.length;
        }
        expect(at).toBe(c.length);
      }
      expect(got).toEqual(parts.map((runs) => runs.flatMap(([offset, length]) => Array.from({ length }, (_, k) => offset + k))));
    }
    expect(() => planGatherChunks([[[0, 1]]], 0)).toThrow(RangeError);
    expect(planGatherChunks([[], []], 8)).toEqual([]);
  });
});

describe("planGatherChunks: touching runs", () => {
  test("runs of neighbouring tensors that touch in the file are one read", () => {
    expect(planGatherChunks([[[0, 4]], [[4, 4]], [[10, 2]]], 64).map((c) => c.runs)).toEqual([[[0, 8], [10, 2]]]);
  });
});


/** Where each byte of a part comes from (its offset in the tensor), by 2-D copies of `height` rows of `width`. */
function replay(copies: Array<{ src: number; srcPitch: number; dst: number; dstPitch: number; width: number; height: number }>, byteLength: number): number[] {
  const from = new Array<number>(byteLength).fill(-1);
  for (const c of copies) {
    expect(c.width).toBeLessThanOrEqual(c.srcPitch);
    for (let r = 0; r < c.height; r++) {
      for (let k = 0; k < c.width; k++) {
        expect(from[c.dst + r * c.dstPitch + k]).toBe(-1);
        from[c.dst + r * c.dstPitch + k] = c.src + r * c.srcPitch + k;
      }
    }
  }
  return from;
}

const byRuns = (runs: Array<[number, number]>) => runs.flatMap(([offset, length]) => Array.from({ length }, (_, k) => offset + k));

describe("splitBlocks and planPitchedCopies (2-D copies from a registered mapping)", () => {
  test("a dim-1 part is one block per piece, the full row apart; a dim-0 part one row", () => {
    expect(splitBlocks("w", [4, 6], 8, { dim: 1, start: 3, end: 6 })).toEqual([{ offset: 3, pitch: 6, width: 3, height: 4, dstOffset: 0, dstPitch: 3 }]);
    expect(splitBlocks("w", [2, 6], 16, { dim: 1, start: 0, end: 1, parts: 3 })).toEqual([0, 1, 2].map((p) => ({ offset: 4 * p, pitch: 12, width: 2, height: 2, dstOffset: 2 * p, dstPitch: 6 })));
    expect(splitBlocks("w", [4, 6], 8, { dim: 0, start: 1, end: 3 })).toEqual([{ offset: 6, pitch: 12, width: 12, height: 1, dstOffset: 0, dstPitch: 12 }]);
    expect(splitBlocks("w", [5, 3], 8, { dim: 0, start: 5, end: 5 })).toEqual([]);
  });

  test("random 3-D splits: the blocks, cut into copies of at most a slot, move the bytes the runs gather, each once", () => {
    let sizes = 3;
    randomSplits(23, (shape, splits) => splits.forEach((s) => {
      const { runs, byteLength } = splitRuns("t", shape, 8, s);
      const blocks = splitBlocks("t", shape, 8, s);
      const direct = replay(blocks.map((b) => ({ src: b.offset, srcPitch: b.pitch, dst: b.dstOffset, dstPitch: b.dstPitch, width: b.width, height: b.height })), byteLength);
      expect(direct).toEqual(byRuns(runs));
      const maxBytes = 1 + (sizes++ % 9);
      const copies = planPitchedCopies([{ start: 1000, blocks }], maxBytes);
      for (const c of copies) expect([c.tensor, c.length <= maxBytes, c.length]).toEqual([0, true, c.width * c.height]);
      const cut = replay(copies.map((c) => ({ src: c.offset - 1000, srcPitch: c.pitch, dst: c.dstOffset, dstPitch: c.dstPitch, width: c.width, height: c.height })), byteLength);
      expect(cut).toEqual(byRuns(runs));
    }));
    expect(() => planPitchedCopies([], 0)).toThrow(RangeError);
  });
});

describe("mappedSpans", () => {
  test("ranges sharing a page are one span, ranges apart stay apart; each span at most one mapping", () => {
    expect(mappedSpans([[100, 200], [4000, 4100], [20000, 20010]], 4096, 2 ** 32, "m.safetensors")).toEqual([{ start: 0, length: 4100 }, { start: 16384, length: 3626 }]);
    // A range ending on a page boundary and the next starting on it share no page.
    expect(mappedSpans([[0, 4096], [4096, 5000]], 4096, 2 ** 32, "m.safetensors")).toEqual([{ start: 0, length: 4096 }, { start: 4096, length: 904 }]);
    expect(mappedSpans([], 4096, 2 ** 32, "m.safetensors")).toEqual([]);
    expect(() => mappedSpans([[0, 100], [5000, 9000]], 4096, 4096, "/ckpt/m.safetensors")).toThrow(expect.objectContaining({ code: "InvalidArgument" }));
  });
});
