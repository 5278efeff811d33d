/**
 * Sharded checkpoints, Hugging Face style: `model-0000i-of-0000N.safetensors` files plus
 * `model.safetensors.index.json` mapping each tensor to its shard. `openSharded` gives the same interface as
 * one file and opens shards only when a tensor in them is asked for; `saveSharded` writes the split.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { DeviceLoadOptions } from "./device/load.ts";
import type { DeviceTensors } from "./device/tensors.ts";
import { fromSystemError, SafetensorsError } from "./errors.ts";
import type { SafetensorsFile, TensorInfo } from "./file.ts";
import { compareNames } from "./format/names.ts";
import { formatIndex, INDEX_FILE, parseIndex, parseSize, planShards, SAVED_FILE, shardName, SINGLE_FILE, type ShardIndex } from "./format/sharded.ts";
import { commit, planFile, writeTemp, type TensorData, type TensorMap } from "./format/writer.ts";
import { sourceOpener } from "./io/open-source.ts";
import { fileFromSource, type OpenOptions } from "./open.ts";
import type { SliceSpec } from "./slice.ts";
import type { Tensor } from "./tensor.ts";

/** A tensor's info in a sharded checkpoint: the shard's offsets, plus which shard file holds it. */
export interface ShardedTensorInfo extends TensorInfo {
  /** The shard's file name (relative to the index's folder). */
  file: string;
}

/**
 * A sharded checkpoint behind one file's interface. Shards open on first use and stay open until `close()`.
 * The index is the source of truth: a tensor a shard holds but the index does not name is not listed.
 *
 * @example
 * ```ts
 * using model = await openSharded("checkpoints/gpt2");
 * const wte = model.tensor("wte.weight");
 * console.log(model.info("wte.weight").file); // "model-00001-of-00003.safetensors"
 * ```
 */
export class ShardedFile {
  /** The index file (or, for a folder holding only `model.safetensors`, that file). */
  readonly path: string;
  readonly #dir: string;
  readonly #index: ShardIndex;
  readonly #openShard: (path: string) => SafetensorsFile;
  readonly #open = new Map<string, SafetensorsFile>();
  #closed = false;

  constructor(path: string, index: ShardIndex, openShard: (path: string) => SafetensorsFile) {
    this.path = path;
    this.#dir = dirname(path);
    this.#index = index;
    this.#openShard = openShard;
  }

  /** The backend serving the shards' bytes (every shard opens the same way; asking opens the first). */
  get backend(): SafetensorsFile["backend"] {
    return this.shard(this.#index.shards[0]!).backend;
  }

  /** Shard file names in order. */
  get files(): string[] {
    return [...this.#index.shards];
  }

  /** The index's own `metadata` (`total_size` and whatever the writer added); null for a single-file folder. */
  get indexMetadata(): Record<string, unknown> | null {
    return this.#index.metadata;
  }

  /** `__metadata__` of the first shard (writers put the same in every shard, e.g. `{"format": "pt"}`). */
  get metadata(): Record<string, string> | null {
    return this.shard(this.#index.shards[0]!).metadata;
  }

  /** Tensor names, sorted. */
  keys(): string[] {
    return [...this.#index.weightMap.keys()].sort(compareNames);
  }

  /** Tensor names shard by shard, each shard in its file order. Opens every shard. */
  offsetKeys(): string[] {
    const map = this.#index.weightMap;
    return this.#index.shards.flatMap((file) => this.shard(file).offsetKeys().filter((name) => map.get(name) === file));
  }

  has(name: string): boolean {
    return this.#index.weightMap.has(name);
  }

  info(name: string): ShardedTensorInfo {
    const file = this.#fileOf(name);
    return { ...this.shard(file).info(name), file };
  }

  tensor(name: string): Tensor {
    return this.shard(this.#fileOf(name)).tensor(name);
  }

  /** Loads every shard's tensors onto a device; see `SafetensorsFile.toDevice`. */
  toDevice(opts?: DeviceLoadOptions): Promise<DeviceTensors> {
    // Imported on use: the device layer sits above this one (and would make an import cycle).
    return import("./device/load.ts").then((m) => m.toDevice(this, opts));
  }

  /** A tensor's bytes in pieces; see `SafetensorsFile.chunks`. */
  chunks(name: string, chunkBytes?: number): Generator<Uint8Array> {
    return this.shard(this.#fileOf(name)).chunks(name, chunkBytes);
  }

  /** Asks the kernel to read ahead the named tensors (all by default); see `SafetensorsFile.prefetch`. */
  prefetch(names: readonly string[] = this.keys()): void {
    for (const name of names) this.shard(this.#fileOf(name)).prefetch([name]);
  }

  /** Part of a tensor; see `SafetensorsFile.slice`. */
  slice(name: string, spec: SliceSpec): Tensor {
    return this.shard(this.#fileOf(name)).slice(name, spec);
  }

  /**
   * The open shard `file` (one of `files`), opened now if it was not yet. Fails if the shard lacks a
   * tensor the index puts in it.
   */
  shard(file: string): SafetensorsFile {
    if (this.#closed) throw new SafetensorsError("Closed", `${this.path} is closed`);
    const open = this.#open.get(file);
    if (open) return open;
    if (!this.#index.shards.includes(file)) throw new SafetensorsError("MissingShard", `${file} is not a shard of ${this.path}`);
    const shard = this.#openShard(join(this.#dir, file));
    for (const [name, where] of this.#index.weightMap) {
      if (where === file && !shard.has(name)) {
        shard.close();
        throw new SafetensorsError("InvalidIndex", `${this.path} puts ${JSON.stringify(name)} in ${file}, which has no such tensor`);
      }
    }
    this.#open.set(file, shard);
    return shard;
  }

  /** Closes every shard opened so far. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const shard of this.#open.values()) shard.close();
    this.#open.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #fileOf(name: string): string {
    const file = this.#index.weightMap.get(name);
    if (file === undefined) throw new SafetensorsError("TensorNotFound", `no tensor named ${JSON.stringify(name)} in ${this.path}`);
    return file;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch (e) {
    throw fromSystemError(e, `cannot open ${path}`);
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Opens a sharded checkpoint from its index file or the folder holding it. A folder with only
 * `model.safetensors` (what `saveSharded` writes when everything fits in one shard) opens too. Every shard
 * must exist up front; each is opened (header read and checked) only when first needed.
 *
 * @example
 * ```ts
 * using model = await openSharded("checkpoints/gpt2/model.safetensors.index.json");
 * for (const name of model.keys()) console.log(name, model.info(name).shape);
 * ```
 */
export async function openSharded(dirOrIndexFile: string, opts: OpenOptions = {}): Promise<ShardedFile> {
  let path = dirOrIndexFile;
  let index: ShardIndex;
  if (isDirectory(path) && !exists(join(path, INDEX_FILE)) && exists(join(path, SINGLE_FILE))) {
    path = join(path, SINGLE_FILE);
    index = { metadata: null, weightMap: new Map(), shards: [SINGLE_FILE] };
  } else {
    if (isDirectory(path)) path = join(path, INDEX_FILE);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw fromSystemError(e, `cannot read ${path}`);
    }
    index = parseIndex(text, path);
  }
  for (const file of index.shards) {
    if (!exists(join(dirname(path), file))) {
      throw new SafetensorsError("MissingShard", `${path} names shard ${file}, which is not in ${dirname(path)}`);
    }
  }
  const openSource = await sourceOpener(opts);
  const openShard = (p: string) => fileFromSource(openSource(p));
  if (index.weightMap.size === 0) {
    // The single-file folder: its own header is the map.
    const only = openShard(path);
    for (const name of only.offsetKeys()) index.weightMap.set(name, SINGLE_FILE);
    only.close();
  }
  return new ShardedFile(path, index, openShard);
}

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
 * await saveSharded("out", { "wte.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array(4) } }, { maxShardSize: "2GB" });
 * ```
 */
export async function saveSharded(
  dir: string,
  tensors: TensorMap,
  opts: SaveShardedOptions = {},
): Promise<string[]> {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const plan = planShards(
    entries.map(([name, t]) => [name, t.data.byteLength] as const),
    parseSize(opts.maxShardSize ?? "5GB"),
  );
  const byName = new Map(entries);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fromSystemError(e, `cannot create ${dir}`);
  }
  // Plan every shard first (this checks all the data), then write them all to temp files, then rename:
  // a failure part-way leaves the folder's earlier checkpoint as it was.
  const weightMap: [string, string][] = [];
  let totalSize = 0;
  const files = plan.map((names, i) => {
    const file = plan.length === 1 ? SINGLE_FILE : shardName(i, plan.length);
    const part = new Map<string, TensorData>();
    for (const name of names) {
      const t = byName.get(name)!;
      part.set(name, t);
      weightMap.push([name, file]);
      totalSize += t.data.byteLength;
    }
    const { header, chunks } = planFile(part, opts.metadata);
    return { path: join(dir, file), chunks: [header, ...chunks] };
  });
  if (plan.length > 1) {
    files.push({ path: join(dir, INDEX_FILE), chunks: [new TextEncoder().encode(formatIndex(totalSize, weightMap))] });
  }
  const temps: string[] = [];
  try {
    for (const f of files) temps.push(writeTemp(f.path, f.chunks));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    throw e;
  }
  files.forEach((f, i) => commit(temps[i]!, f.path));
  const written = files.map((f) => f.path);
  removeLeftovers(dir, new Set(written.map((p) => basename(p))));
  return written;
}

/** Removes what an earlier save left in `dir` that this save did not write (see `SAVED_FILE`). */
function removeLeftovers(dir: string, keep: Set<string>): void {
  try {
    for (const name of readdirSync(dir)) {
      if (SAVED_FILE.test(name) && !keep.has(name)) rmSync(join(dir, name), { force: true });
    }
  } catch (e) {
    throw fromSystemError(e, `cannot tidy ${dir}`);
  }
}
