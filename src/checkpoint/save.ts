/**
 * Writing sharded checkpoints, Hugging Face style: `saveSharded` splits tensors into
 * `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json` (one shard: `model.safetensors`).
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { fromSystemError } from "../errors.ts";
import { formatIndex, INDEX_FILE, parseSize, planShards, SAVED_FILE, shardName, SINGLE_FILE } from "../format/sharded.ts";
import { commit, planHeader, streamed, tensorBytes, writeTemp, type TensorMap, type TensorShape } from "../format/writer.ts";

export interface SaveShardedOptions {
  /** Largest shard's data size: bytes, or a string like `"5GB"` (10^9) or `"5GiB"` (2^30). Default `"5GB"`. */
  maxShardSize?: number | string;
  /** `__metadata__` written into every shard. */
  metadata?: Record<string, string>;
}

/**
 * Writes `tensors` into `dir` split into shards of at most `maxShardSize` data bytes (greedy, in insertion
 * order; a bigger tensor gets a shard to itself), then the index. One shard is written as
 * `model.safetensors` with no index. Files a previous save left in `dir` that this one did not write
 * (`model-*-of-*.safetensors`, `model.safetensors`, the index) are removed, so the folder reads back as
 * exactly this save. Pass a `Map` when names look like integers: plain objects list those first.
 *
 * @returns the paths written, shards first, index last.
 * @example
 * ```ts
 * import { saveSharded, type TensorMap } from "tensormap";
 * const tensors: TensorMap = {
 *   "wte.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array(4) },
 *   "wpe.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array(4) },
 * };
 * const written = await saveSharded("out", tensors, { maxShardSize: 16 });
 * console.log(written); // ["out/model-00001-of-00002.safetensors", "out/model-00002-of-00002.safetensors", "out/model.safetensors.index.json"]
 * ```
 */
export async function saveSharded(
  dir: string,
  tensors: TensorMap,
  opts: SaveShardedOptions = {},
): Promise<string[]> {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const bytes = new Map(entries.map(([name, t]) => [name, tensorBytes(name, t)]));
  const shapes = entries.map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, byteLength: bytes.get(name)!.byteLength }] as const);
  return writeShards(dir, shapes, (name) => bytes.get(name)!, opts);
}

/**
 * What `saveSharded` does, with each tensor's bytes fetched by `read(name)` only as it is written (once per
 * tensor), so a caller whose data lives elsewhere (a checkpoint being converted) holds one tensor at a time.
 *
 * @returns the paths written, shards first, index last.
 * @example
 * ```ts
 * writeShards("out", [["w", { dtype: "F32", shape: [2], byteLength: 8 }]], (name) => file.tensor(name).bytes);
 * ```
 */
export function writeShards(
  dir: string,
  tensors: ReadonlyArray<readonly [string, TensorShape]>,
  read: (name: string) => Uint8Array,
  opts: SaveShardedOptions = {},
): string[] {
  const plan = planShards(tensors.map(([name, t]) => [name, t.byteLength] as const), parseSize(opts.maxShardSize ?? "5GB"));
  const byName = new Map(tensors);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fromSystemError(e, `cannot create ${dir}`);
  }
  // Plan every shard's header (this checks every shape), write them all to temp files, one tensor in memory
  // at a time, then rename, index last: a failure part-way leaves the folder's earlier checkpoint as it was.
  const weightMap: [string, string][] = [];
  let totalSize = 0;
  const files = plan.map((names, i) => {
    const file = plan.length === 1 ? SINGLE_FILE : shardName(i, plan.length);
    const { header, order } = planHeader(names.map((name) => [name, byName.get(name)!]), opts.metadata);
    for (const name of names) {
      weightMap.push([name, file]);
      totalSize += byName.get(name)!.byteLength;
    }
    return { path: join(dir, file), chunks: () => streamed(header, order, read) };
  });
  if (plan.length > 1) {
    const index = new TextEncoder().encode(formatIndex(totalSize, weightMap));
    files.push({ path: join(dir, INDEX_FILE), chunks: () => [index][Symbol.iterator]() as Generator<Uint8Array> });
  }
  const temps: string[] = [];
  try {
    for (const f of files) temps.push(writeTemp(f.path, f.chunks()));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw e;
  }
  try {
    files.forEach((f, i) => commit(temps[i]!, f.path));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw e;
  }
  const written = files.map((f) => f.path);
  removeLeftovers(dir, new Set(written.map((p) => basename(p))));
  return written;
}

/**
 * Removes what an earlier save left in `dir` that this save did not write (see `SAVED_FILE`).
 *
 * @example
 * ```ts
 * removeLeftovers("out", new Set(["model.safetensors"])); // drops old model-0000i-of-0000N shards and index
 * ```
 */
export function removeLeftovers(dir: string, keep: ReadonlySet<string>): void {
  try {
    for (const name of readdirSync(dir)) {
      if (SAVED_FILE.test(name) && !keep.has(name)) rmSync(join(dir, name), { force: true });
    }
  } catch (e) {
    throw fromSystemError(e, `cannot tidy ${dir}`);
  }
}
