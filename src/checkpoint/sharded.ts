/**
 * Sharded checkpoints, Hugging Face style: `model-0000i-of-0000N.safetensors` files plus
 * `model.safetensors.index.json` mapping each tensor to its shard. `openSharded` gives the same interface as
 * one file and opens shards only when a tensor in them is asked for; `saveSharded` writes the split.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { DeviceLoadOptions } from "../device/load.ts";
import type { DeviceTensors } from "../device/tensors.ts";
import { fromSystemError, namingFile, SafetensorsError } from "../errors.ts";
import type { SafetensorsFile } from "./file.ts";
import type { TensorInfo } from "../format/layout.ts";
import { compareNames } from "../format/names.ts";
import { FOLDER_FILES, formatIndex, INDEX_FILE, parseIndex, parseSize, planShards, SAVED_FILE, shardName, SINGLE_FILE, type ShardIndex } from "../format/sharded.ts";
import { commit, planHeader, streamed, tensorBytes, writeTemp, type TensorMap, type TensorShape } from "../format/writer.ts";
import { sourceOpener } from "../io/open-source.ts";
import { fileFromSource, type OpenOptions } from "./open.ts";
import type { SliceSpec } from "./slice.ts";
import type { Tensor } from "./tensor.ts";

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
  /** The index file, or the one file of a single-file checkpoint (`model.safetensors`, `pytorch_model.bin`). */
  readonly path: string;
  readonly #dir: string;
  readonly #index: ShardIndex;
  readonly #openShard: (path: string) => SafetensorsFile;
  readonly #open = new Map<string, SafetensorsFile>();
  #closed = false;

  /** `opened`: shards already open (by file name), kept rather than opened again. */
  constructor(path: string, index: ShardIndex, openShard: (path: string) => SafetensorsFile, opened?: ReadonlyMap<string, SafetensorsFile>) {
    this.path = path;
    this.#dir = dirname(path);
    this.#index = index;
    this.#openShard = openShard;
    for (const [file, shard] of opened ?? []) this.#open.set(file, shard);
  }

  /** The backend serving the shards' bytes (every shard opens the same way; asking opens the first). */
  get backend(): SafetensorsFile["backend"] {
    return this.shard(this.#index.shards[0]!).backend;
  }

  /** Shard file names in order. */
  get files(): string[] {
    return [...this.#index.shards];
  }

  /** The index's own `metadata` (`total_size` and whatever the writer added); null for a single-file checkpoint. */
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

  info(name: string): TensorInfo {
    const file = this.#fileOf(name);
    return { ...this.shard(file).info(name), file };
  }

  tensor(name: string): Tensor {
    return this.shard(this.#fileOf(name)).tensor(name);
  }

  /** Loads every shard's tensors onto a device; see `SafetensorsFile.toDevice`. */
  toDevice(opts?: DeviceLoadOptions): Promise<DeviceTensors> {
    // Imported on use: the device layer sits above this one (and would make an import cycle).
    return import("../device/load.ts").then((m) => m.toDevice(this, opts));
  }

  /** A tensor's bytes in pieces; see `SafetensorsFile.chunks`. */
  chunks(name: string, chunkBytes?: number): Generator<Uint8Array> {
    return this.shard(this.#fileOf(name)).chunks(name, chunkBytes);
  }

  /** Reads the named tensors (all by default) ahead, each shard's at once; see `SafetensorsFile.prefetch`. */
  prefetch(names: readonly string[] = this.keys()): Promise<void> {
    const byShard = new Map<string, string[]>();
    for (const name of names) {
      const file = this.#fileOf(name);
      const list = byShard.get(file);
      if (list) list.push(name);
      else byShard.set(file, [name]);
    }
    return Promise.all([...byShard].map(([file, ns]) => this.shard(file).prefetch(ns))).then(() => {});
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
    let shard: SafetensorsFile;
    try {
      shard = this.#openShard(join(this.#dir, file));
    } catch (e) {
      throw namingFile(e, file);
    }
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

/**
 * Reads and checks an index file: valid, and every shard it names present beside it.
 *
 * @example
 * ```ts
 * const { weightMap, shards } = readIndex("checkpoints/llama/pytorch_model.bin.index.json");
 * ```
 */
export function readIndex(path: string): ShardIndex {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw fromSystemError(e, `cannot read ${path}`);
  }
  const index = parseIndex(text, path);
  for (const file of index.shards) {
    if (!existsSync(join(dirname(path), file))) {
      throw new SafetensorsError("MissingShard", `${path} names shard ${file}, which is not in ${dirname(path)}`);
    }
  }
  return index;
}

/**
 * Opens a sharded checkpoint from its index file (any `*.json`) or the folder holding it; any other file
 * opens as a checkpoint of one shard. A folder is searched as Hugging Face lays one out, safetensors first:
 * `model.safetensors.index.json`, `model.safetensors` (one file, as `saveSharded` writes a checkpoint that
 * fits in one shard), `pytorch_model.bin.index.json` (PyTorch pickle shards), then `pytorch_model.bin`.
 * Every shard must exist up front; each is opened (header or pickle read and checked) only when first needed.
 *
 * @example
 * ```ts
 * using model = await openSharded("checkpoints/gpt2/model.safetensors.index.json");
 * for (const name of model.keys()) console.log(name, model.info(name).shape);
 * ```
 */
export async function openSharded(dirOrIndexFile: string, opts: OpenOptions = {}): Promise<ShardedFile> {
  const path = isDirectory(dirOrIndexFile) ? folderCheckpoint(dirOrIndexFile) : dirOrIndexFile;
  const single = path.endsWith(".json") ? undefined : basename(path);
  const index: ShardIndex = single ? { metadata: null, weightMap: new Map(), shards: [single] } : readIndex(path);
  const openSource = await sourceOpener(opts);
  const openShard = (p: string) => fileFromSource(openSource(p));
  if (single) {
    // One file: its own header is the map, and the file stays open as the one shard.
    const only = openShard(path);
    for (const name of only.offsetKeys()) index.weightMap.set(name, single);
    return new ShardedFile(path, index, openShard, new Map([[single, only]]));
  }
  return new ShardedFile(path, index, openShard);
}

/** The file a model folder opens through: the first of {@link FOLDER_FILES} it holds. */
function folderCheckpoint(dir: string): string {
  const found = FOLDER_FILES.find((f) => existsSync(join(dir, f)));
  if (found) return join(dir, found);
  throw new SafetensorsError("ENOENT", `${dir} holds no checkpoint (none of ${FOLDER_FILES.join(", ")})`);
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
