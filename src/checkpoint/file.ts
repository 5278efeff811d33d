import { basename } from "node:path";
import { SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import { headerLength, parseHeader } from "../format/header.ts";
import type { FileLayout, TensorEntry, TensorInfo } from "../format/layout.ts";
import { compareNames } from "../format/names.ts";
import type { ByteSource } from "../io/source.ts";
import { isPytorch, openPytorchLayout } from "../pickle/layout.ts";
import type { CheckpointFile, CheckpointFormat } from "./checkpoint.ts";
import { planSlice, type SliceSpec } from "./slice.ts";
import { Tensor } from "./tensor.ts";

const NO_LEAVES: ReadonlyMap<string, unknown> = new Map();

/**
 * One checkpoint file, safetensors or PyTorch: a {@link Checkpoint} of one shard, itself. Reading a tensor
 * touches only that tensor's bytes; which backend serves them (`"mmap"` views or `"read"` copies) is the
 * source's business.
 *
 * @example
 * ```ts
 * import { open } from "tensormap";
 * using file = await open("model.safetensors");
 * for (const name of file.keys()) console.log(name, file.info(name).shape);
 * ```
 */
export class SafetensorsFile implements CheckpointFile {
  readonly format: CheckpointFormat;
  #source: ByteSource;
  #layout: FileLayout;
  #closed = false;
  #sorted?: string[];

  constructor(source: ByteSource, layout: FileLayout, format: CheckpointFormat) {
    this.#source = source;
    this.#layout = layout;
    this.format = format;
  }

  /**
   * The backend serving bytes: `"mmap"` (zero-copy views) or `"read"` (positional reads).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors", { backend: "read" });
   * console.log(file.backend); // "read"
   * ```
   */
  get backend(): ByteSource["backend"] {
    return this.#source.backend;
  }

  /**
   * The path the file was opened by, as given.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.path); // "model.safetensors"
   * ```
   */
  get path(): string {
    return this.#source.path;
  }

  /**
   * The one file: its own name.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("checkpoints/gpt2/model-00001-of-00003.safetensors");
   * console.log(file.files); // ["model-00001-of-00003.safetensors"]
   * ```
   */
  get files(): readonly string[] {
    return [basename(this.path)];
  }

  /**
   * A single file has no index.
   *
   * @example
   * ```ts
   * import { openCheckpoint } from "tensormap";
   * using model = await openCheckpoint("model.safetensors");
   * console.log(model.indexMetadata); // null; a sharded checkpoint gives its index's { total_size, … }
   * ```
   */
  get indexMetadata(): null {
    return null;
  }

  /**
   * Settles once the pages that `open(path, { populate: true })` maps on a kernel thread are all mapped (at
   * once without `populate`, or under the read backend). Never rejects: pages it missed fault in on first touch.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors", { populate: true });
   * await file.populated; // every page mapped: no page fault from here on
   * ```
   */
  get populated(): Promise<void> {
    return this.#source.populated ?? Promise.resolve();
  }

  /**
   * The byte source behind the file, for layers that move bytes in bulk (devices, converters).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const { start, byteLength } = file.entry("wte.weight");
   * const raw = file.source.bytes(start, byteLength); // the same bytes as file.tensor("wte.weight").bytes
   * ```
   */
  get source(): ByteSource {
    return this.#source;
  }

  /**
   * `__metadata__`, or null when the file has none.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.metadata?.format); // "pt"
   * ```
   */
  get metadata(): Record<string, string> | null {
    return this.#layout.metadata;
  }

  /**
   * A PyTorch checkpoint's non-tensor values (epoch, optimizer hyperparameters, …) by dotted name, as
   * unpickled; `describeLeaf` renders one. Empty for safetensors files.
   *
   * @example
   * ```ts
   * import { describeLeaf, open } from "tensormap";
   * using file = await open("training-checkpoint.pt");
   * for (const [name, value] of file.leaves) console.log(name, describeLeaf(value)); // epoch 3, …
   * ```
   */
  get leaves(): ReadonlyMap<string, unknown> {
    return this.#layout.leaves ?? NO_LEAVES;
  }

  /**
   * Tensor names, sorted.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.keys().slice(0, 2)); // ["h.0.attn.c_attn.bias", "h.0.attn.c_attn.weight"]
   * ```
   */
  keys(): string[] {
    this.#sorted ??= [...this.#layout.order].sort(compareNames);
    return [...this.#sorted];
  }

  /**
   * Tensor names in file order (`file`, if given, must be this file's name).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * for (const name of file.offsetKeys()) console.log(name, file.info(name).dataOffsets); // [0, 192], …
   * ```
   */
  offsetKeys(file?: string): string[] {
    if (file !== undefined) this.shard(file);
    return [...this.#layout.order];
  }

  /**
   * Itself: the one shard a single file has.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.shard("model.safetensors") === file); // true; another name throws MissingShard
   * ```
   */
  shard(file: string): SafetensorsFile {
    if (file !== basename(this.path)) throw new SafetensorsError("MissingShard", `${file} is not a shard of ${this.path}`);
    return this;
  }

  /**
   * The header (or pickle) was checked whole at open: the tensor count.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.verify()); // 17
   * ```
   */
  verify(): number {
    if (this.#closed) throw new SafetensorsError("Closed", `${this.path} is closed`);
    return this.#layout.order.length;
  }

  /**
   * Whether the file holds a tensor of that name.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.has("wte.weight"), file.has("lm_head.weight")); // true false
   * ```
   */
  has(name: string): boolean {
    return this.#layout.entries.has(name);
  }

  /**
   * Dtype, shape, data offsets and byte length of one tensor, without reading it.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.info("wte.weight")); // { dtype: "BF16", shape: [64, 16], dataOffsets: [18688, 20736], byteLength: 2048 }
   * ```
   */
  info(name: string): TensorInfo {
    const { dtype, shape, dataOffsets, byteLength } = this.#entry(name);
    return { dtype, shape: [...shape], dataOffsets: [...dataOffsets], byteLength };
  }

  /**
   * Where one tensor's bytes live in the source: for layers that move bytes in bulk (devices, converters).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.entry("wte.weight").start); // 20088: the header's 8 + N bytes, then 18688 into the data
   * ```
   */
  entry(name: string): Readonly<TensorEntry> {
    return this.#entry(name);
  }

  /**
   * One tensor, with exactly its bytes.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const wte = file.tensor("wte.weight");
   * console.log(wte.dtype, wte.shape, wte.bytes.byteLength); // "BF16" [64, 16] 2048
   * ```
   */
  tensor(name: string): Tensor {
    const e = this.#entry(name);
    const bytes = e.gather ? e.gather(this.#source) : this.#source.bytes(e.start, e.byteLength);
    return new Tensor(name, e.dtype, [...e.shape], bytes);
  }

  /**
   * A tensor's bytes in pieces of at most `chunkBytes`: for tensors too large for one view (over 4 GiB under
   * Bun's mmap) and for streaming without holding a whole tensor in memory under the read backend.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * for (const piece of file.chunks("wte.weight", 1024)) console.log(piece.byteLength); // 1024, twice
   * ```
   */
  *chunks(name: string, chunkBytes = 1 << 28): Generator<Uint8Array> {
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
      throw new SafetensorsError("InvalidArgument", `chunkBytes must be a positive integer, got ${chunkBytes}`);
    }
    const e = this.#entry(name);
    if (e.gather) {
      yield e.gather(this.#source);
    } else if (this.#source.chunks) {
      yield* this.#source.chunks(e.start, e.byteLength, chunkBytes);
    } else {
      for (let at = 0; at < e.byteLength; at += chunkBytes) yield this.#source.bytes(e.start + at, Math.min(chunkBytes, e.byteLength - at));
    }
  }

  /**
   * Part of a tensor, reading only the bytes it needs. Per dimension: `[start, end)`, an index, or `null`.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const firstRows = file.slice("wte.weight", [[0, 10], null]);
   * console.log(firstRows.shape); // [10, 16]
   * ```
   */
  slice(name: string, spec: SliceSpec): Tensor {
    const e = this.#entry(name);
    const plan = planSlice(name, e.shape, DTYPES.get(e.dtype)!.bits, spec);
    const out = new Uint8Array(plan.byteLength);
    const whole = e.gather?.(this.#source);
    const first = plan.runs[0];
    const last = plan.runs[plan.runs.length - 1];
    const span = first && last ? last[0] + last[1] - first[0] : 0;
    // Many small runs close together: one read of the span beats a read per run.
    const spanBytes = whole ?? (plan.runs.length > 1 && span <= 2 * plan.byteLength ? this.#source.bytes(e.start + first![0], span) : undefined);
    const base = whole ? 0 : first?.[0] ?? 0;
    let at = 0;
    for (const [offset, length] of plan.runs) {
      const dst = out.subarray(at, at + length);
      if (spanBytes) dst.set(spanBytes.subarray(offset - base, offset - base + length));
      else this.#source.readInto(dst, e.start + offset);
      at += length;
    }
    return new Tensor(name, e.dtype, plan.shape, out);
  }

  /**
   * Reads these tensors (default: all) ahead: a mapped file maps their pages on a kernel thread, while
   * JavaScript goes on, and never rejects (a page not read ahead is read on first touch); a remote file fetches
   * them, rejecting with the fetch's error. An unknown name throws here. Tensors next to each other in the file
   * go as one range. A no-op under the read backend.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const ready = file.prefetch(["wte.weight"]);
   * // … other work …
   * await ready; // wte's pages are in memory
   * ```
   */
  prefetch(names: readonly string[] = this.#layout.order): Promise<void> {
    const entries = names.map((n) => this.#entry(n)).filter((e) => !e.gather);
    const prefetch = this.#source.prefetch?.bind(this.#source);
    if (!prefetch) return Promise.resolve();
    const runs: Array<[number, number]> = [];
    for (const e of entries.sort((a, b) => a.start - b.start)) {
      const last = runs.at(-1);
      if (last && e.start <= last[1]) last[1] = Math.max(last[1], e.start + e.byteLength);
      else runs.push([e.start, e.start + e.byteLength]);
    }
    return Promise.all(runs.map(([from, to]) => prefetch(from, to - from))).then(() => {});
  }

  /**
   * Releases the file. Tensors already handed out stay readable under the read backend; see the mmap backend
   * for views. `using` calls it at the end of the scope.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * const file = await open("model.safetensors");
   * const n = file.keys().length;
   * file.close(); // from here on file.tensor(…) throws SafetensorsError Closed
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#source.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #entry(name: string): TensorEntry {
    if (this.#closed) throw new SafetensorsError("Closed", `${this.path} is closed`);
    const e = this.#layout.entries.get(name);
    if (!e) throw new SafetensorsError("TensorNotFound", `no tensor named ${JSON.stringify(name)} in ${this.path}`);
    return e;
  }
}

/**
 * A file over a source that is already open: safetensors, or PyTorch when its first bytes say so (read by an
 * allowlist, never executed). Synchronous, for callers that open files lazily, like sharded checkpoints.
 * Closes the source if the file is refused.
 *
 * @example
 * ```ts
 * import { fileFromSource, openSource } from "tensormap";
 * using file = fileFromSource(await openSource("model.safetensors", { backend: "read" }));
 * console.log(file.format, file.keys().length); // "safetensors" 17
 * ```
 */
export function fileFromSource(source: ByteSource): SafetensorsFile {
  try {
    const prefix = source.bytes(0, Math.min(8, source.size));
    if (isPytorch(prefix)) return new SafetensorsFile(source, openPytorchLayout(source), "pytorch");
    const n = headerLength(prefix, source.size);
    const header = parseHeader(source.bytes(0, 8 + n), source.size);
    // The header's entries are fresh objects of this open, with their absolute starts: used as they are.
    return new SafetensorsFile(source, { entries: header.tensors, order: header.order, metadata: header.metadata }, "safetensors");
  } catch (e) {
    source.close();
    throw e;
  }
}
