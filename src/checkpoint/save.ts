/**
 * Writing sharded checkpoints, Hugging Face style: `saveSharded` splits tensors into
 * `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json` (one shard: `model.safetensors`).
 */
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { formatIndex, INDEX_FILE, parseSize, planShards, SAVED_FILE, shardName, SINGLE_FILE } from "../format/sharded.ts";
import { planHeader, streamed, tensorBytes, type TensorMap, type TensorShape } from "../format/writer.ts";
import { writeAtomic, writeFolder } from "../io/commit.ts";

export interface SaveShardedOptions {
  /** Largest shard's data size: bytes, or a string like `"5GB"` (10^9) or `"5GiB"` (2^30). Default `"5GB"`. */
  maxShardSize?: number | string;
  /** `__metadata__` written into every shard. */
  metadata?: Record<string, string>;
}

/**
 * Writes `tensors` into `dir` split into shards of at most `maxShardSize` data bytes (greedy, in insertion
 * order; a bigger tensor gets a shard to itself), then the index. One shard is written as
 * `model.safetensors` with no index. The folder is replaced as a whole: after a crash at any point it holds
 * the earlier checkpoint or this one, never a mix. A previous save's files (`model-*-of-*.safetensors`,
 * `model.safetensors`, the index) go; every other file in `dir` stays. Pass a `Map` when names look like
 * integers: plain objects list those first.
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
 * `check(staged)`, given the paths of the files written in the hidden staging folder, runs before the folder is
 * swapped in: a failure there leaves `dir` as it was.
 *
 * @returns the paths written (in `dir`), shards first, index last.
 * @example
 * ```ts
 * await writeShards("out", [["w", { dtype: "F32", shape: [2], byteLength: 8 }]], (name) => file.tensor(name).bytes);
 * ```
 */
export async function writeShards(
  dir: string,
  tensors: ReadonlyArray<readonly [string, TensorShape]>,
  read: (name: string) => Uint8Array,
  opts: SaveShardedOptions = {},
  check?: (staged: string[]) => void | Promise<void>,
): Promise<string[]> {
  const plan = planShards(tensors.map(([name, t]) => [name, t.byteLength] as const), parseSize(opts.maxShardSize ?? "5GB"));
  const byName = new Map(tensors);
  // Plan every shard's header (this checks every shape) before anything is written.
  const weightMap: [string, string][] = [];
  let totalSize = 0;
  const files = plan.map((names, i) => {
    const file = plan.length === 1 ? SINGLE_FILE : shardName(i, plan.length);
    const { header, order } = planHeader(names.map((name) => [name, byName.get(name)!]), opts.metadata);
    for (const name of names) {
      weightMap.push([name, file]);
      totalSize += byName.get(name)!.byteLength;
    }
    return { name: file, chunks: () => streamed(header, order, read) };
  });
  if (plan.length > 1) {
    const index = new TextEncoder().encode(formatIndex(totalSize, weightMap));
    files.push({ name: INDEX_FILE, chunks: () => [index][Symbol.iterator]() as Generator<Uint8Array> });
  }
  await writeFolder(
    dir,
    async (staging) => {
      for (const f of files) {
        // One tensor in memory at a time; between shards the event loop runs, so a signal stops the save there.
        writeAtomic(join(staging, f.name), f.chunks());
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      await check?.(files.map((f) => join(staging, f.name)));
    },
    (name) => SAVED_FILE.test(name),
  );
  return files.map((f) => join(dir, f.name));
}
