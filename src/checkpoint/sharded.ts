/**
 * Sharded checkpoints, Hugging Face style: `model-0000i-of-0000N.safetensors` files (or PyTorch
 * `pytorch_model-0000i-of-0000N.bin`) plus an index mapping each tensor to its shard. {@link ShardedFile} is a
 * {@link Checkpoint}; it opens a shard only when a tensor in it is asked for, and checks every shard it opens
 * against the index: the shard must hold exactly the tensors the index gives it, in the index's format.
 */
import { dirname, join } from "node:path";
import { namingFile, SafetensorsError } from "../errors.ts";
import type { TensorInfo } from "../format/layout.ts";
import { compareNames } from "../format/names.ts";
import type { ShardIndex } from "../format/sharded.ts";
import type { Backend } from "../io/source.ts";
import type { Checkpoint, CheckpointFile, CheckpointFormat } from "./checkpoint.ts";
import type { SliceSpec } from "./slice.ts";
import type { Tensor } from "./tensor.ts";

const NO_LEAVES: ReadonlyMap<string, unknown> = new Map();

/**
 * A sharded checkpoint behind the {@link Checkpoint} interface. The index is the source of truth. Shards
 * opened for a tensor stay open until `close()`; those opened only to be listed or checked (`offsetKeys`,
 * `verify`, `leaves`) are closed again, so a checkpoint of thousands of shards never holds them all open.
 *
 * @example
 * ```ts
 * import { openSharded } from "tensormap";
 * using model = await openSharded("checkpoints/gpt2");
 * const wte = model.tensor("wte.weight");
 * console.log(model.info("wte.weight").file); // "model-00001-of-00003.safetensors"
 * ```
 */
export class ShardedFile implements Checkpoint {
  /** The index file, or the one file of a single-file checkpoint (`model.safetensors`, `pytorch_model.bin`). */
  readonly path: string;
  readonly format: CheckpointFormat;
  readonly #dir: string;
  readonly #index: ShardIndex;
  readonly #openShard: (path: string) => CheckpointFile;
  readonly #open = new Map<string, CheckpointFile>();
  /** Each shard's tensors as the index lists them, and (once read) in the shard's own order. */
  readonly #indexed = new Map<string, string[]>();
  readonly #orders = new Map<string, string[]>();
  #firstShard?: { backend: Backend; metadata: Record<string, string> | null };
  #leaves?: ReadonlyMap<string, unknown>;
  #closed = false;

  /** `opened`: shards already open (by file name), kept rather than opened again. */
  constructor(
    path: string,
    index: ShardIndex,
    format: CheckpointFormat,
    openShard: (path: string) => CheckpointFile,
    opened?: ReadonlyMap<string, CheckpointFile>,
  ) {
    this.path = path;
    this.format = format;
    this.#dir = dirname(path);
    this.#index = index;
    this.#openShard = openShard;
    for (const file of index.shards) this.#indexed.set(file, []);
    for (const [name, file] of index.weightMap) this.#indexed.get(file)!.push(name);
    for (const [file, shard] of opened ?? []) {
      this.#adopt(file, shard);
      this.#open.set(file, shard);
    }
  }

  /**
   * The backend serving the shards' bytes (every shard opens the same way).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2", { backend: "read" });
   * console.log(model.backend); // "read"
   * ```
   */
  get backend(): Backend {
    return this.#first().backend;
  }

  /**
   * Shard file names in order.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.files); // ["model-00001-of-00003.safetensors", …, "model-00003-of-00003.safetensors"]
   * ```
   */
  get files(): readonly string[] {
    return [...this.#index.shards];
  }

  /**
   * The index's own `metadata` (`total_size` and whatever the writer added); null for a single-file checkpoint.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.indexMetadata?.total_size); // 20736
   * ```
   */
  get indexMetadata(): Record<string, unknown> | null {
    return this.#index.metadata;
  }

  /**
   * `__metadata__` of the first shard (writers put the same in every shard, e.g. `{"format": "pt"}`).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.metadata?.format); // "pt"
   * ```
   */
  get metadata(): Record<string, string> | null {
    return this.#first().metadata;
  }

  /**
   * Every shard's non-tensor values (PyTorch shards), by dotted name; empty for safetensors.
   *
   * @example
   * ```ts
   * import { describeLeaf, openSharded } from "tensormap";
   * using model = await openSharded("training-checkpoint.pt"); // one file: a checkpoint of one shard
   * console.log(describeLeaf(model.leaves.get("epoch"))); // "3"
   * ```
   */
  get leaves(): ReadonlyMap<string, unknown> {
    if (this.format === "safetensors") return NO_LEAVES;
    if (!this.#leaves) {
      const all = new Map<string, unknown>();
      for (const file of this.#index.shards) this.#visit(file, (shard) => shard.leaves.forEach((v, k) => all.set(k, v)));
      this.#leaves = all;
    }
    return this.#leaves;
  }

  /**
   * Tensor names, sorted; from the index alone (no shard is opened).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.keys().length); // 17
   * ```
   */
  keys(): string[] {
    return [...this.#index.weightMap.keys()].sort(compareNames);
  }

  /**
   * Tensor names shard by shard, each shard in its file order (only shard `file`'s when given).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.offsetKeys("model-00003-of-00003.safetensors")); // ["h.2.attn.c_attn.bias", …]
   * ```
   */
  offsetKeys(file?: string): string[] {
    if (file !== undefined) return [...this.#order(this.#known(file))];
    return this.#index.shards.flatMap((f) => this.#order(f));
  }

  /**
   * Whether the index names a tensor of that name.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.has("wte.weight")); // true
   * ```
   */
  has(name: string): boolean {
    return this.#index.weightMap.has(name);
  }

  /**
   * Dtype, shape, offsets and size of one tensor, and the shard holding it (opened now if it was not).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.info("h.2.mlp.c_proj.weight").file); // "model-00003-of-00003.safetensors"
   * ```
   */
  info(name: string): TensorInfo {
    const file = this.#fileOf(name);
    return { ...this.shard(file).info(name), file };
  }

  /**
   * One tensor, with exactly its bytes, from the shard holding it (opened now if it was not).
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.tensor("h.1.ln_1.weight").toFloat32().length); // 16
   * ```
   */
  tensor(name: string): Tensor {
    return this.shard(this.#fileOf(name)).tensor(name);
  }

  /**
   * A tensor's bytes in pieces; see `CheckpointFile.chunks`.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * for (const piece of model.chunks("wte.weight", 1024)) console.log(piece.byteLength); // 1024, twice
   * ```
   */
  chunks(name: string, chunkBytes?: number): Generator<Uint8Array> {
    return this.shard(this.#fileOf(name)).chunks(name, chunkBytes);
  }

  /**
   * Reads the named tensors (all by default) ahead, each shard's at once; see `CheckpointFile.prefetch`.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * await model.prefetch(); // every shard's tensors in memory
   * ```
   */
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

  /**
   * Part of a tensor; see `CheckpointFile.slice`.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * const q = model.slice("h.1.attn.c_attn.weight", [null, [0, 16]]); // the q third of GPT-2's c_attn
   * console.log(q.shape); // [16, 16]
   * ```
   */
  slice(name: string, spec: SliceSpec): Tensor {
    return this.shard(this.#fileOf(name)).slice(name, spec);
  }

  /**
   * The open shard `file` (one of `files`), opened and checked against the index now if it was not yet.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * const last = model.shard(model.files.at(-1)!);
   * console.log(last.keys()); // the four h.2 tensors the index gives that shard
   * ```
   */
  shard(file: string): CheckpointFile {
    this.#live();
    const open = this.#open.get(this.#known(file));
    if (open) return open;
    const shard = this.#openChecked(file);
    this.#open.set(file, shard);
    return shard;
  }

  /**
   * Opens every shard in turn (closing those it opened) and checks it against the index; then checks the
   * index's `total_size`, when it gives one, against the shards' data. Returns the tensor count.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * using model = await openSharded("checkpoints/gpt2");
   * console.log(model.verify()); // 17; a shard that disagrees with the index throws InvalidIndex
   * ```
   */
  verify(): number {
    let bytes = 0;
    for (const file of this.#index.shards) {
      this.#visit(file, (shard) => {
        for (const name of this.#indexed.get(file)!) bytes += shard.info(name).byteLength;
      });
    }
    const total = this.#index.metadata?.total_size;
    // PyTorch indexes count tied weights in different ways: only a safetensors index's total is a rule.
    if (this.format === "safetensors" && typeof total === "number" && total !== bytes) {
      throw new SafetensorsError("InvalidIndex", `${this.path} gives total_size ${total}, but its shards hold ${bytes} bytes of tensors: shards from another checkpoint?`);
    }
    return this.#index.weightMap.size;
  }

  /**
   * Closes every shard opened so far. Idempotent; `using` calls it at the end of the scope.
   *
   * @example
   * ```ts
   * import { openSharded } from "tensormap";
   * const model = await openSharded("checkpoints/gpt2");
   * const wte = model.tensor("wte.weight").toFloat32(); // a copy: still good after close
   * model.close();
   * ```
   */
  close(): void {
    this.#closed = true;
    for (const shard of this.#open.values()) shard.close();
    this.#open.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): void {
    if (this.#closed) throw new SafetensorsError("Closed", `${this.path} is closed`);
  }

  #known(file: string): string {
    if (!this.#indexed.has(file)) throw new SafetensorsError("MissingShard", `${file} is not a shard of ${this.path}`);
    return file;
  }

  /** Runs `use` on shard `file`: the open one, or one opened for the purpose and closed again. */
  #visit<T>(file: string, use: (shard: CheckpointFile) => T): T {
    this.#live();
    const open = this.#open.get(file);
    if (open) return use(open);
    const shard = this.#openChecked(file);
    try {
      return use(shard);
    } finally {
      shard.close();
    }
  }

  #openChecked(file: string): CheckpointFile {
    let shard: CheckpointFile;
    try {
      shard = this.#openShard(join(this.#dir, file));
    } catch (e) {
      throw namingFile(e, file);
    }
    try {
      this.#adopt(file, shard);
    } catch (e) {
      shard.close();
      throw e;
    }
    return shard;
  }

  /** Checks a newly opened shard against the index and learns what it needs from it. */
  #adopt(file: string, shard: CheckpointFile): void {
    checkShard(this.path, this.#index.weightMap, this.#indexed.get(file)!, this.format, file, shard);
    if (!this.#orders.has(file)) this.#orders.set(file, shard.offsetKeys());
    if (file === this.#index.shards[0]) this.#firstShard ??= { backend: shard.backend, metadata: shard.metadata };
  }

  #order(file: string): string[] {
    if (!this.#orders.has(file)) this.#visit(file, () => undefined);
    return this.#orders.get(file)!;
  }

  #first(): { backend: Backend; metadata: Record<string, string> | null } {
    if (!this.#firstShard) this.#visit(this.#index.shards[0]!, () => undefined);
    return this.#firstShard!;
  }

  #fileOf(name: string): string {
    const file = this.#index.weightMap.get(name);
    if (file === undefined) throw new SafetensorsError("TensorNotFound", `no tensor named ${JSON.stringify(name)} in ${this.path}`);
    return file;
  }
}

/**
 * The one rule tying a shard to its index: the shard is in the index's format and holds exactly the tensors
 * the index gives it (a tensor missing would fail a loader; one left out would be missed by it).
 *
 * @example
 * ```ts
 * checkShard("model.safetensors.index.json", index.weightMap, ["wte.weight"], "safetensors", "model-00001-of-00002.safetensors", shard);
 * ```
 */
export function checkShard(
  indexPath: string,
  weightMap: ReadonlyMap<string, string>,
  indexed: readonly string[],
  format: CheckpointFormat,
  file: string,
  shard: CheckpointFile,
): void {
  if (shard.format !== format) {
    throw new SafetensorsError("InvalidIndex", `${indexPath} is a ${format} index, but ${file} is a ${shard.format} file`);
  }
  for (const name of indexed) {
    if (!shard.has(name)) throw new SafetensorsError("InvalidIndex", `${indexPath} puts ${JSON.stringify(name)} in ${file}, which has no such tensor`);
  }
  if (indexed.length === shard.verify()) return;
  for (const name of shard.offsetKeys()) {
    const listed = weightMap.get(name);
    if (listed !== file) {
      const where = listed ? `puts it in ${listed}` : "does not name it";
      throw new SafetensorsError("InvalidIndex", `${file} holds ${JSON.stringify(name)}, but the index ${where}`);
    }
  }
}
