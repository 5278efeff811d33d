/**
 * Tensor-parallel planning: which part of each tensor a rank holds, by rule set (`"llama"`, `"gpt2"`, or a
 * custom plan). Pure: names, shapes and the model's config in, a {@link Split} out; no I/O.
 */
import { SafetensorsError } from "../errors.ts";
import type { TensorInfo } from "../format/layout.ts";
import { planSlice, type SlicePlan } from "../checkpoint/slice.ts";
import type { Chunk } from "./plan.ts";

/**
 * A rank's part of one tensor: indices `[start, end)` of dimension `dim`. With `parts` (GPT-2's fused `c_attn`,
 * q, k and v side by side), the dimension is `parts` equal blocks and the rank holds `[start, end)` of each block,
 * the pieces concatenated in block order.
 */
export interface Split {
  dim: number;
  start: number;
  end: number;
  parts?: number;
}

/** What a custom rule says of a tensor: split this dimension evenly, or keep it whole on every rank. */
export type SplitRule = number | "replicate";

/**
 * A custom plan: name patterns (`*` matches any run of characters; the first matching pattern wins, a name no
 * pattern matches is replicated) to a rule, or a function of the tensor's name and info.
 */
export type CustomPlan = Record<string, SplitRule> | ((name: string, info: Pick<TensorInfo, "dtype" | "shape">) => SplitRule);

/** `"llama"` (also Mistral, Qwen2 and other Llama-style names), `"gpt2"`, or a {@link CustomPlan}. */
export type TensorParallelPlan = "llama" | "gpt2" | CustomPlan;

/** The parts of `config.json` the rules read. */
export interface ModelConfig {
  hidden_size?: number;
  num_attention_heads?: number;
  num_key_value_heads?: number;
  head_dim?: number;
  n_head?: number;
  [key: string]: unknown;
}

/** vLLM pads the vocabulary to a multiple of this before dividing it among ranks. */
export const VOCAB_PADDING = 64;

/** One rank of a world. */
export interface RankOf {
  rank: number;
  worldSize: number;
}

/**
 * The part of tensor `name` that `rank` of `worldSize` holds under `plan`, or null when every rank holds it whole.
 * A dimension that does not divide among the ranks is `UnevenSplit` naming the tensor (vocabularies are padded
 * instead). `"llama"` needs the config's head counts for `k_proj`/`v_proj`.
 *
 * @example
 * ```ts
 * import { planSplit } from "tensormap";
 * const config = { hidden_size: 4096, num_attention_heads: 32, num_key_value_heads: 8 };
 * planSplit("model.layers.0.self_attn.o_proj.weight", { dtype: "BF16", shape: [4096, 4096] }, { rank: 1, worldSize: 4 }, "llama", config);
 * // { dim: 1, start: 1024, end: 2048 }
 * planSplit("h.0.attn.c_attn.weight", { dtype: "F32", shape: [768, 2304] }, { rank: 1, worldSize: 2 }, "gpt2");
 * // { dim: 1, start: 384, end: 768, parts: 3 }: columns 384..768 of each of q, k and v
 * ```
 */
export function planSplit(
  name: string,
  info: Pick<TensorInfo, "dtype" | "shape">,
  at: RankOf,
  plan: TensorParallelPlan,
  config: ModelConfig | null = null,
): Split | null {
  checkRank(at);
  if (plan === "llama") return llama(name, info.shape, at, config);
  if (plan === "gpt2") return gpt2(name, info.shape, at, config);
  return even(name, info.shape, ruleOf(plan, name, info), at);
}

/**
 * The shape of a rank's part.
 *
 * @example
 * ```ts
 * splitShape([768, 2304], { dim: 1, start: 0, end: 384, parts: 3 }); // [768, 1152]
 * ```
 */
function splitShape(shape: readonly number[], split: Split | null): number[] {
  if (!split) return [...shape];
  return shape.map((d, i) => (i === split.dim ? (split.end - split.start) * (split.parts ?? 1) : d));
}

/**
 * The pieces of dimension `split.dim` a rank holds, as `[start, end)` of the whole dimension, in output order.
 *
 * @example
 * ```ts
 * splitPieces([768, 2304], { dim: 1, start: 384, end: 768, parts: 3 }); // [[384, 768], [1152, 1536], [1920, 2304]]
 * ```
 */
export function splitPieces(shape: readonly number[], split: Split): Array<[number, number]> {
  const parts = split.parts ?? 1;
  const block = shape[split.dim]! / parts;
  return Array.from({ length: parts }, (_, p): [number, number] => [p * block + split.start, p * block + split.end]);
}

/**
 * The byte runs of a tensor that make up a rank's part, in row-major output order, runs that touch in the file
 * merged: `[offset within the tensor, length]`. A dim-0 part is one run; a dim-1 part one run per row.
 *
 * @example
 * ```ts
 * splitRuns("w", [4, 6], 8, { dim: 1, start: 3, end: 6 }); // { shape: [4, 3], runs: [[3, 3], [9, 3], [15, 3], [21, 3]], byteLength: 12 }
 * ```
 */
export function splitRuns(name: string, shape: readonly number[], bits: number, split: Split | null): { shape: number[]; runs: Array<[number, number]>; byteLength: number } {
  const plans = piecePlans(name, shape, bits, split);
  const runs: Array<[number, number]> = [];
  // Pieces are equal, so each has a run per outer index: row by row, piece by piece.
  for (let row = 0; row < plans[0]!.runs.length; row++) {
    for (const plan of plans) {
      const [offset, length] = plan.runs[row]!;
      const last = runs.at(-1);
      if (last && last[0] + last[1] === offset) last[1] += length;
      else runs.push([offset, length]);
    }
  }
  return { shape: splitShape(shape, split), runs, byteLength: plans.reduce((a, p) => a + p.byteLength, 0) };
}

/** The slice plan of each piece a rank holds ({@link splitPieces}); of the whole tensor where it is replicated. */
function piecePlans(name: string, shape: readonly number[], bits: number, split: Split | null): SlicePlan[] {
  const pieces = split ? splitPieces(shape, split) : [null];
  return pieces.map((p) => planSlice(name, shape, bits, shape.map((_, d) => (p && d === split!.dim ? p : null))));
}

function checkRank({ rank, worldSize }: RankOf): void {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new SafetensorsError("InvalidArgument", `worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new SafetensorsError("InvalidArgument", `rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
}

const uneven = (name: string, what: string, n: number, worldSize: number) =>
  new SafetensorsError("UnevenSplit", `${name}: ${what} of ${n} does not divide among ${worldSize} ranks`);

/** An even split of `dim` into `parts` blocks, each divided among the ranks (`dim` past the shape: replicated). */
function evenDim(name: string, shape: readonly number[], dim: number, { rank, worldSize }: RankOf, parts = 1): Split | null {
  if (dim >= shape.length) return null;
  const n = shape[dim]!;
  if (n % (parts * worldSize) !== 0) throw uneven(name, parts > 1 ? `each of ${parts} blocks of dim ${dim}` : `dim ${dim}`, parts > 1 ? n / parts : n, worldSize);
  const per = n / parts / worldSize;
  return { dim, start: rank * per, end: (rank + 1) * per, ...(parts > 1 ? { parts } : {}) };
}

function even(name: string, shape: readonly number[], rule: SplitRule, at: RankOf): Split | null {
  if (rule === "replicate") return null;
  if (!Number.isInteger(rule) || rule < 0 || rule >= shape.length) {
    throw new SafetensorsError("InvalidArgument", `${name}: the plan splits dim ${rule}, but the tensor has ${shape.length} dimensions`);
  }
  return evenDim(name, shape, rule, at);
}

function ruleOf(plan: CustomPlan, name: string, info: Pick<TensorInfo, "dtype" | "shape">): SplitRule {
  if (typeof plan === "function") return plan(name, info);
  for (const [pattern, rule] of Object.entries(plan)) if (globMatch(pattern, name)) return rule;
  return "replicate";
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
  return re.test(name);
}

/** The vocabulary split: padded to {@link VOCAB_PADDING}, each rank's part holding only real rows (maybe none). */
function vocab(name: string, shape: readonly number[], { rank, worldSize }: RankOf): Split {
  const rows = shape[0]!;
  const padded = Math.ceil(rows / VOCAB_PADDING) * VOCAB_PADDING;
  if (padded % worldSize !== 0) throw uneven(name, "the padded vocabulary", padded, worldSize);
  const per = padded / worldSize;
  return { dim: 0, start: Math.min(rank * per, rows), end: Math.min((rank + 1) * per, rows) };
}

const positive = (v: unknown): number | undefined => (Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : undefined);

function llama(name: string, shape: readonly number[], at: RankOf, config: ModelConfig | null): Split | null {
  const m = /(?:^|\.)(q_proj|k_proj|v_proj|gate_proj|up_proj|o_proj|down_proj|embed_tokens|lm_head)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const [, layer, kind] = m;
  if (layer === "embed_tokens" || layer === "lm_head") return kind === "weight" ? vocab(name, shape, at) : null;
  if (layer === "o_proj" || layer === "down_proj") return kind === "weight" ? evenDim(name, shape, 1, at) : null;
  if (layer === "k_proj" || layer === "v_proj") return kvHeads(name, shape, at, config);
  if (layer === "q_proj" && config) {
    const heads = positive(config.num_attention_heads);
    if (heads !== undefined && heads % at.worldSize !== 0) throw uneven(name, "num_attention_heads", heads, at.worldSize);
  }
  return evenDim(name, shape, 0, at);
}

/** K/V heads: split among the ranks while there are at least as many heads as ranks, else one head per rank. */
function kvHeads(name: string, shape: readonly number[], at: RankOf, config: ModelConfig | null): Split {
  const heads = positive(config?.num_attention_heads);
  const kvCount = positive(config?.num_key_value_heads) ?? heads;
  const hidden = positive(config?.hidden_size);
  const headDim = positive(config?.head_dim) ?? (hidden && heads ? hidden / heads : undefined);
  if (kvCount === undefined || headDim === undefined || !Number.isInteger(headDim)) {
    throw new SafetensorsError("InvalidArgument", `${name}: the llama plan needs num_key_value_heads (or num_attention_heads) and head_dim (or hidden_size) from config.json`);
  }
  if (shape[0] !== kvCount * headDim) {
    throw new SafetensorsError("InvalidArgument", `${name}: ${shape[0]} rows, but config.json says ${kvCount} K/V heads of ${headDim}`);
  }
  const { rank, worldSize } = at;
  if (worldSize < kvCount) {
    if (kvCount % worldSize !== 0) throw uneven(name, "num_key_value_heads", kvCount, worldSize);
    const per = (kvCount / worldSize) * headDim;
    return { dim: 0, start: rank * per, end: (rank + 1) * per };
  }
  if (worldSize % kvCount !== 0) throw uneven(name, `replicating ${kvCount} K/V heads`, kvCount, worldSize);
  const head = Math.floor(rank / (worldSize / kvCount));
  return { dim: 0, start: head * headDim, end: (head + 1) * headDim };
}

function gpt2(name: string, shape: readonly number[], at: RankOf, config: ModelConfig | null): Split | null {
  const m = /(?:^|\.)(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj|wte|lm_head)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const [, layer, kind] = m;
  if (layer === "wte" || layer === "lm_head") return kind === "weight" ? vocab(name, shape, at) : null;
  // Conv1D stores [in, out]: the output dimension is the last one, so a bias (out) follows its weight's dim 1.
  const outDim = kind === "weight" ? 1 : 0;
  if (layer === "attn.c_proj" || layer === "mlp.c_proj") return kind === "weight" ? evenDim(name, shape, 0, at) : null;
  if (layer === "mlp.c_fc") return evenDim(name, shape, outDim, at);
  const heads = positive(config?.n_head ?? config?.num_attention_heads);
  if (heads !== undefined && heads % at.worldSize !== 0) throw uneven(name, "n_head", heads, at.worldSize);
  return evenDim(name, shape, outDim, at, 3);
}

/** A ring chunk gathered from several file runs: each run is read in turn into the slot, packed, in order. */
export interface GatherChunk extends Chunk {
  /** `[file offset, length]` of each run, in slot order; `fileOffset` is the first one's and `length` their sum. */
  runs: Array<[number, number]>;
}

/**
 * Packs tensors' parts (each a list of absolute file runs, in the part's row-major order) into chunks of at most
 * `chunkBytes`, a run longer than the room left split across chunks; each chunk feeds each tensor one piece, its
 * packed bytes being the next stretch of the part.
 *
 * @example
 * ```ts
 * planGatherChunks([[[100, 3], [110, 3]]], 4);
 * // [{ fileOffset: 100, length: 4, runs: [[100, 3], [110, 1]], pieces: [t0 0..4] }, { fileOffset: 111, length: 2, runs: [[111, 2]], pieces: [t0 4..6] }]
 * ```
 */
export function planGatherChunks(parts: ReadonlyArray<ReadonlyArray<readonly [number, number]>>, chunkBytes: number): GatherChunk[] {
  if (!(chunkBytes >= 1)) throw new RangeError(`chunk size must be positive, got ${chunkBytes}`);
  const chunks: GatherChunk[] = [];
  let cur: GatherChunk | undefined;
  parts.forEach((runs, tensor) => {
    let done = 0;
    for (const [offset, length] of runs) {
      for (let at = 0; at < length; ) {
        if (!cur || cur.length === chunkBytes) chunks.push((cur = { fileOffset: offset + at, length: 0, pieces: [], runs: [] }));
        const take = Math.min(length - at, chunkBytes - cur.length);
        const last = cur.pieces.at(-1);
        if (last?.tensor === tensor) last.length += take;
        else cur.pieces.push({ tensor, tensorOffset: done, chunkOffset: cur.length, length: take });
        // Runs that touch in the file are one read (one ranged GET, remotely): the slot holds them packed anyway.
        const run = cur.runs.at(-1);
        if (run && run[0] + run[1] === offset + at) run[1] += take;
        else cur.runs.push([offset + at, take]);
        cur.length += take;
        done += take;
        at += take;
      }
    }
  });
  return chunks;
}

/**
 * A strided block of a rank's part, one `cudaMemcpy2DAsync`: `height` rows of `width` bytes starting at `offset`
 * in the tensor, `pitch` apart there, landing `dstPitch` apart from `dstOffset` in the part.
 */
export interface PitchedBlock {
  offset: number;
  pitch: number;
  width: number;
  height: number;
  dstOffset: number;
  dstPitch: number;
}

/**
 * A rank's part of a tensor as 2-D blocks, one per piece of the split dimension (GPT-2's fused q, k and v: three):
 * a dim-0 part is one row, a dim-1 part a row per outer index, the full row's bytes apart.
 *
 * @example
 * ```ts
 * splitBlocks("w", [4, 6], 8, { dim: 1, start: 3, end: 6 });
 * // [{ offset: 3, pitch: 6, width: 3, height: 4, dstOffset: 0, dstPitch: 3 }]
 * ```
 */
export function splitBlocks(name: string, shape: readonly number[], bits: number, split: Split | null): PitchedBlock[] {
  // Each piece's runs are one per outer index, equally long and equally far apart: the rows of one block.
  const rows = piecePlans(name, shape, bits, split).map((p) => p.runs).filter((r) => r.length > 0);
  const dstPitch = rows.reduce((a, r) => a + r[0]![1], 0);
  let dstOffset = 0;
  return rows.map((runs) => {
    const [offset, width] = runs[0]!;
    const block = { offset, pitch: runs.length > 1 ? runs[1]![0] - offset : width, width, height: runs.length, dstOffset, dstPitch };
    dstOffset += width;
    return block;
  });
}

/** One 2-D copy of at most a slot's bytes: rows of a {@link PitchedBlock} of tensor `tensor`, `offset` absolute in the file. */
export interface PitchedCopy extends PitchedBlock {
  tensor: number;
  /** `width × height`: the bytes it lands. */
  length: number;
}

/**
 * Cuts tensors' blocks (tensor `i` starting at file offset `parts[i].start`) into 2-D copies of at most `maxBytes`
 * each: as many whole rows as fit, or a row in pieces where one row is longer.
 *
 * @example
 * ```ts
 * planPitchedCopies([{ start: 100, blocks: splitBlocks("w", [4, 6], 8, { dim: 1, start: 3, end: 6 }) }], 6);
 * // rows 0–1 and rows 2–3: [{ tensor: 0, offset: 103, pitch: 6, width: 3, height: 2, dstOffset: 0, dstPitch: 3, length: 6 }, { … offset: 115, dstOffset: 6 … }]
 * ```
 */
export function planPitchedCopies(parts: ReadonlyArray<{ start: number; blocks: readonly PitchedBlock[] }>, maxBytes: number): PitchedCopy[] {
  if (!(maxBytes >= 1)) throw new RangeError(`copy size must be positive, got ${maxBytes}`);
  const copies: PitchedCopy[] = [];
  parts.forEach(({ start, blocks }, tensor) => {
    for (const b of blocks) {
      const row = (r: number) => ({ offset: start + b.offset + r * b.pitch, dstOffset: b.dstOffset + r * b.dstPitch });
      const perCopy = Math.floor(maxBytes / b.width);
      if (perCopy >= 1) {
        for (let r = 0; r < b.height; r += perCopy) {
          const height = Math.min(perCopy, b.height - r);
          copies.push({ tensor, ...row(r), pitch: b.pitch, dstPitch: b.dstPitch, width: b.width, height, length: b.width * height });
        }
        continue;
      }
      for (let r = 0; r < b.height; r++) {
        for (let at = 0; at < b.width; at += maxBytes) {
          const width = Math.min(maxBytes, b.width - at);
          const { offset, dstOffset } = row(r);
          copies.push({ tensor, offset: offset + at, pitch: width, dstOffset: dstOffset + at, dstPitch: width, width, height: 1, length: width });
        }
      }
    }
  });
  return copies;
}
