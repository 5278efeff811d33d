/**
 * Checkpoints → safetensors: PyTorch pickles converted, safetensors re-sharded, either cast to another
 * floating-point dtype on the way (`src/format/cast.ts`). A file becomes one `.safetensors` file; a folder or an
 * index of shards (or any input given a shard size) becomes a folder of shards named by the Hugging Face
 * convention. Output is written under temporary names, verified by re-reading every tensor, and only then
 * renamed into place: on any error no output file is left behind. Tensors are read, written and verified
 * one at a time, so converting needs memory for the largest tensor, not the checkpoint.
 */
import { Buffer } from "node:buffer";
import { existsSync, statSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { open, openCheckpoint, resolveCheckpoint, type OpenOptions } from "../checkpoint/open.ts";
import { writeShards } from "../checkpoint/save.ts";
import { fromSystemError, SafetensorsError } from "../errors.ts";
import { castBytes, castDtype, type CastTarget } from "../format/cast.ts";
import { DTYPES } from "../format/dtypes.ts";
import { planHeader, streamed, type TensorShape } from "../format/writer.ts";
import { commit, discard, writeTemp } from "../io/commit.ts";

export interface ConvertOptions extends OpenOptions {
  /**
   * The largest shard's data size, bytes or `"5GB"`/`"5GiB"`; default `"5GB"` for sharded input. Given for a
   * single file, the output is a folder of shards too.
   */
  maxShardSize?: number | string;
  /** Casts every F64, F32, F16 and BF16 tensor to this dtype as torch's `.to()` does; other dtypes are kept. */
  dtype?: CastTarget;
  /** Which tensors (and non-tensor values, for `dropped`) to take, by name (default: all). */
  keep?: (name: string) => boolean;
  /** Called as bytes are converted and then verified; `done` reaches `total` at the end. */
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertResult {
  /** The files written, in order (the index last for sharded output). */
  files: string[];
  tensors: number;
  /** Tensor data bytes written. */
  bytes: number;
  /** How many tensors `dtype` changed the dtype of. */
  cast: number;
  /** The checkpoint's non-tensor values (epoch, hyperparameters, …) that `keep` keeps, by dotted name: safetensors holds none of them. */
  dropped: string[];
}

/** What converted pickles say of themselves, as the reference's converter writes; safetensors input keeps its own. */
const PICKLE_METADATA = { format: "pt" };

/**
 * Converts a PyTorch or safetensors checkpoint to safetensors. `inPath` a file → `outPath` is the `.safetensors`
 * file to write; `inPath` a folder or index (or `maxShardSize` given) → `outPath` is the folder to write shards
 * and `model.safetensors.index.json` into (a folder of safetensors may be re-sharded in place). Tied weights are
 * written as separate tensors; non-tensor values (epoch, hyperparameters) are not written, and the result names
 * them. Safetensors input keeps its `__metadata__`; pickles get `{"format": "pt"}`. A file OUT may not be IN
 * itself, and a checkpoint with no tensors at all is refused (`NoTensors`) rather than written as an empty file.
 *
 * @example
 * ```ts
 * import { convert } from "tensormap";
 * const one = await convert("training-checkpoint.pt", "model.safetensors", { onProgress: (done, total) => console.log(`${done}/${total}`) });
 * console.log(one.tensors, one.dropped); // 16, ["optimizer.param_groups.0.lr", …, "epoch", …]: not tensors, not written
 * const folder = await convert("checkpoints/pytorch", "out/pytorch", { maxShardSize: "2GB" });
 * console.log(folder.files); // ["out/pytorch/model.safetensors"]: one shard is written without an index
 * const bf16 = await convert("model.safetensors", "out/bf16", { dtype: "BF16", maxShardSize: "10kB" });
 * console.log(bf16.cast, bf16.files.at(-1)); // 17 "out/bf16/model.safetensors.index.json"
 * ```
 */
export async function convert(inPath: string, outPath: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const where = resolveInput(inPath);
  const model = await openCheckpoint(where, opts);
  try {
    // Every shard opens (and is checked against the index) before anything is written.
    for (const file of model.files) model.shard(file);
    // An empty safetensors file would pass for a converted model.
    if (model.offsetKeys().length === 0) {
      const others = model.leaves.size ? ` (only ${model.leaves.size} other value${model.leaves.size === 1 ? "" : "s"})` : "";
      throw new SafetensorsError("NoTensors", `${inPath} holds no tensors${others}: nothing to convert`);
    }
    if (kept(model.offsetKeys(), opts).length === 0) throw new SafetensorsError("NoTensors", `${keptNone(model.offsetKeys().length, inPath)}: nothing to convert`);
    const plan = new Plan(model, opts);
    return where.sharded || opts.maxShardSize !== undefined ? await convertSharded(plan, outPath, opts) : await convertFile(plan, inPath, outPath, opts);
  } finally {
    model.close();
  }
}

/** A folder holding pickles converts them (as it always did); a folder of safetensors only is re-sharded. */
function resolveInput(inPath: string) {
  try {
    return resolveCheckpoint(inPath, "pytorch");
  } catch (e) {
    if (e instanceof SafetensorsError && e.code === "ENOENT" && isFolder(inPath)) return resolveCheckpoint(inPath);
    throw e;
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** `1 tensor`, `3 tensors`. */
const tensors = (n: number) => `${n} tensor${n === 1 ? "" : "s"}`;

/** That a filter kept none of a checkpoint's `n` tensors. */
const keptNone = (n: number, path: string) => (n === 1 ? `the one tensor in ${path} is not kept by the filter` : `none of the ${n} tensors in ${path} is kept by the filter`);

/** The names `keep` keeps, in their order: the tensors to write, the values reported as `dropped`. */
function kept(names: string[], opts: ConvertOptions): string[] {
  return opts.keep ? names.filter(opts.keep) : names;
}

/**
 * What is written: the kept tensors, each with its output dtype and size (cast or not), their bytes on demand,
 * and the metadata. Planned before any data is read, so every header is checked first.
 */
class Plan {
  readonly model: Checkpoint;
  readonly names: string[];
  readonly metadata: Record<string, string> | undefined;
  readonly #target: CastTarget | undefined;
  readonly #keep: ConvertOptions;

  constructor(model: Checkpoint, opts: ConvertOptions) {
    this.model = model;
    this.#keep = opts;
    this.names = kept(model.offsetKeys(), opts);
    this.metadata = model.format === "pytorch" ? PICKLE_METADATA : model.metadata ?? undefined;
    this.#target = opts.dtype;
  }

  /** Dtype, shape and size of a tensor as written. */
  shape(name: string): TensorShape {
    const { dtype, shape, byteLength } = this.model.info(name);
    const to = this.#target ? castDtype(dtype, this.#target) : dtype;
    return { dtype: to, shape, byteLength: (byteLength / DTYPES.get(dtype)!.bits) * DTYPES.get(to)!.bits };
  }

  shapes(): Array<[string, TensorShape]> {
    return this.names.map((name) => [name, this.shape(name)]);
  }

  get bytes(): number {
    return this.names.reduce((n, name) => n + this.shape(name).byteLength, 0);
  }

  /** How many tensors change dtype. */
  get cast(): number {
    return this.names.filter((name) => this.shape(name).dtype !== this.model.info(name).dtype).length;
  }

  /** A tensor's bytes as written: a view or copy of the checkpoint's, or cast from them a piece at a time. */
  bytesOf(name: string): Uint8Array {
    const { dtype, byteLength } = this.model.info(name);
    if (!this.#target || castDtype(dtype, this.#target) === dtype) return this.model.tensor(name).bytes;
    return castBytes(this.model.chunks(name), dtype, this.#target, byteLength);
  }

  result(files: string[]): ConvertResult {
    return { files, tensors: this.names.length, bytes: this.bytes, cast: this.cast, dropped: kept([...this.model.leaves.keys()], this.#keep) };
  }
}

/** Reads one tensor as it is about to be written. */
function reader(plan: Plan, progress: Progress): (name: string) => Uint8Array {
  return (name) => {
    const bytes = plan.bytesOf(name);
    progress.add(bytes.byteLength);
    return bytes;
  };
}

/**
 * Re-reads a written file and checks every tensor against what the plan says it should hold (cast again from
 * the checkpoint), one tensor at a time, so verifying needs no more memory than writing. Returns how many
 * tensors it held.
 */
async function verify(path: string, plan: Plan, progress: Progress, opts: OpenOptions): Promise<number> {
  const file = await open(path, { backend: opts.backend });
  try {
    const names = file.offsetKeys();
    for (const name of names) {
      if (!plan.model.has(name)) throw new SafetensorsError("VerifyFailed", `${path} holds ${JSON.stringify(name)}, which the checkpoint does not`);
      const want = plan.shape(name);
      const got = file.tensor(name);
      const wanted = plan.bytesOf(name);
      const a = Buffer.from(got.bytes.buffer, got.bytes.byteOffset, got.bytes.byteLength);
      const b = Buffer.from(wanted.buffer, wanted.byteOffset, wanted.byteLength);
      if (got.dtype !== want.dtype || got.shape.join() !== want.shape.join() || !a.equals(b)) {
        throw new SafetensorsError("VerifyFailed", `${path}: tensor ${name} did not read back as written`);
      }
      progress.add(a.byteLength);
    }
    return names.length;
  } finally {
    file.close();
  }
}

class Progress {
  done = 0;
  readonly total: number;
  readonly report?: (done: number, total: number) => void;
  constructor(total: number, report?: (done: number, total: number) => void) {
    this.total = total;
    this.report = report;
  }
  add(n: number): void {
    this.done += n;
    this.report?.(this.done, this.total);
  }
}

async function convertFile(plan: Plan, inPath: string, outPath: string, opts: ConvertOptions): Promise<ConvertResult> {
  let tmp: string | undefined;
  try {
    // After the open: IN is known to be there when OUT is compared with it.
    requireWritableFile(inPath, outPath);
    const progress = new Progress(2 * plan.bytes, opts.onProgress);
    const { header, order } = planHeader(plan.shapes(), plan.metadata);
    // Beside OUT under a name a later write recognises (and removes, if this process dies), with OUT's mode.
    tmp = writeTemp(outPath, streamed(header, order, reader(plan, progress)));
    const verified = await verify(tmp, plan, progress, opts);
    if (verified !== plan.names.length) throw new SafetensorsError("VerifyFailed", `${tmp} holds ${tensors(verified)}, expected ${plan.names.length}`);
    commit(tmp, outPath);
    return plan.result([outPath]);
  } catch (e) {
    if (tmp) discard(tmp);
    throw fromSystemError(e, `cannot convert ${inPath} to ${outPath}`);
  }
}

async function convertSharded(plan: Plan, outDir: string, opts: ConvertOptions): Promise<ConvertResult> {
  const progress = new Progress(2 * plan.bytes, opts.onProgress);
  // Written and checked in a hidden folder, then swapped in whole: on any error OUT stays as it was.
  const written = await writeShards(outDir, plan.shapes(), reader(plan, progress), { maxShardSize: opts.maxShardSize, metadata: plan.metadata }, async (staged) => {
    let verified = 0;
    for (const shard of staged.filter((p) => p.endsWith(".safetensors"))) verified += await verify(shard, plan, progress, opts);
    if (verified !== plan.names.length) throw new SafetensorsError("VerifyFailed", `shards hold ${tensors(verified)}, expected ${plan.names.length}`);
  });
  return plan.result(written);
}

/** OUT must be a file path in an existing folder, and not IN itself (the rename would replace the checkpoint). */
function requireWritableFile(inPath: string, outPath: string): void {
  let out: Stats | undefined;
  try {
    out = statSync(outPath);
  } catch {
    // Not there yet: the usual case.
  }
  if (out?.isDirectory()) throw new SafetensorsError("EISDIR", `${outPath} is a folder: give the .safetensors file to write`);
  if (out) {
    const input = statSync(inPath);
    if (input.dev === out.dev && input.ino === out.ino) throw new SafetensorsError("InvalidArgument", `${outPath} is ${inPath}: converting would replace the checkpoint it reads`);
  } else if (!existsSync(dirname(outPath))) {
    throw new SafetensorsError("ENOENT", `cannot write ${outPath}: folder ${dirname(outPath)} does not exist`);
  }
}
