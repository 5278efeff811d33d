/**
 * PyTorch checkpoints → safetensors. A `.bin`/`.pt` file becomes one `.safetensors` file; a folder or a
 * `pytorch_model.bin.index.json` of pickle shards becomes a folder of shards named by the Hugging Face
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
import { planHeader, streamed, type TensorShape } from "../format/writer.ts";
import { commit, discard, writeTemp } from "../io/commit.ts";

export interface ConvertOptions extends OpenOptions {
  /** Sharded output only: the largest shard's data size, bytes or `"5GB"`/`"5GiB"`. Default `"5GB"`. */
  maxShardSize?: number | string;
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
  /** The checkpoint's non-tensor values (epoch, hyperparameters, …) that `keep` keeps, by dotted name: safetensors holds none of them. */
  dropped: string[];
}

const METADATA = { format: "pt" };

/**
 * Converts a PyTorch checkpoint to safetensors. `inPath` a file → `outPath` is the `.safetensors` file to
 * write; `inPath` a folder or pickle index → `outPath` is the folder to write shards and
 * `model.safetensors.index.json` into. Tied weights are written as separate tensors; non-tensor values
 * (epoch, hyperparameters) are not written, and the result names them. A file OUT may not be IN itself, and a
 * checkpoint with no tensors at all is refused (`NoTensors`) rather than written as an empty file.
 *
 * @example
 * ```ts
 * import { convert } from "tensormap";
 * const one = await convert("training-checkpoint.pt", "model.safetensors", { onProgress: (done, total) => console.log(`${done}/${total}`) });
 * console.log(one.tensors, one.dropped); // 16, ["optimizer.param_groups.0.lr", …, "epoch", …]: not tensors, not written
 * const folder = await convert("checkpoints/pytorch", "out/pytorch", { maxShardSize: "2GB" });
 * console.log(folder.files); // ["out/pytorch/model.safetensors"]: one shard is written without an index
 * ```
 */
export async function convert(inPath: string, outPath: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const where = resolveCheckpoint(inPath, "pytorch");
  const model = await openCheckpoint(where, opts);
  try {
    if (model.format !== "pytorch") throw new SafetensorsError("InvalidArgument", `${inPath} is not a PyTorch checkpoint`);
    // Every shard opens (and is checked against the index) before anything is written.
    for (const file of model.files) model.shard(file);
    // An empty safetensors file would pass for a converted model.
    if (model.offsetKeys().length === 0) {
      const others = model.leaves.size ? ` (only ${model.leaves.size} other value${model.leaves.size === 1 ? "" : "s"})` : "";
      throw new SafetensorsError("NoTensors", `${inPath} holds no tensors${others}: nothing to convert`);
    }
    if (kept(model.offsetKeys(), opts).length === 0) throw new SafetensorsError("NoTensors", `none of the ${model.offsetKeys().length} tensors in ${inPath} is kept by the filter: nothing to convert`);
    return where.sharded ? await convertSharded(model, outPath, opts) : await convertFile(model, inPath, outPath, opts);
  } finally {
    model.close();
  }
}

/** The names `keep` keeps, in their order: the tensors to write, the values reported as `dropped`. */
function kept(names: string[], opts: ConvertOptions): string[] {
  return opts.keep ? names.filter(opts.keep) : names;
}

/** Dtype, shape and size of each tensor, for planning headers before any data is read. */
function shapesOf(model: Checkpoint, names: readonly string[]): Array<[string, TensorShape]> {
  return names.map((name) => {
    const { dtype, shape, byteLength } = model.info(name);
    return [name, { dtype, shape, byteLength }];
  });
}

/** Reads one tensor from its checkpoint as it is about to be written (a copy under the read backend). */
function reader(model: Checkpoint, progress: Progress): (name: string) => Uint8Array {
  return (name) => {
    const bytes = model.tensor(name).bytes;
    progress.add(bytes.byteLength);
    return bytes;
  };
}

/**
 * Re-reads a written file and checks every tensor against the checkpoint it came from, one tensor at a
 * time, so verifying needs no more memory than writing. Returns how many tensors it held.
 */
async function verify(path: string, model: Checkpoint, progress: Progress, opts: OpenOptions): Promise<number> {
  const file = await open(path, { backend: opts.backend });
  try {
    const names = file.offsetKeys();
    for (const name of names) {
      if (!model.has(name)) throw new SafetensorsError("VerifyFailed", `${path} holds ${JSON.stringify(name)}, which the checkpoint does not`);
      const want = model.tensor(name);
      const got = file.tensor(name);
      const a = Buffer.from(got.bytes.buffer, got.bytes.byteOffset, got.bytes.byteLength);
      const b = Buffer.from(want.bytes.buffer, want.bytes.byteOffset, want.bytes.byteLength);
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

function totalBytes(model: Checkpoint, names: readonly string[]): number {
  return names.reduce((n, name) => n + model.info(name).byteLength, 0);
}

async function convertFile(model: Checkpoint, inPath: string, outPath: string, opts: ConvertOptions): Promise<ConvertResult> {
  let tmp: string | undefined;
  try {
    // After the open: IN is known to be there when OUT is compared with it.
    requireWritableFile(inPath, outPath);
    const names = kept(model.offsetKeys(), opts);
    const bytes = totalBytes(model, names);
    const progress = new Progress(2 * bytes, opts.onProgress);
    const { header, order } = planHeader(shapesOf(model, names), METADATA);
    // Beside OUT under a name a later write recognises (and removes, if this process dies), with OUT's mode.
    tmp = writeTemp(outPath, streamed(header, order, reader(model, progress)));
    const verified = await verify(tmp, model, progress, opts);
    if (verified !== names.length) throw new SafetensorsError("VerifyFailed", `${tmp} holds ${verified} tensors, expected ${names.length}`);
    commit(tmp, outPath);
    return { files: [outPath], tensors: names.length, bytes, dropped: kept([...model.leaves.keys()], opts) };
  } catch (e) {
    if (tmp) discard(tmp);
    throw fromSystemError(e, `cannot convert ${inPath} to ${outPath}`);
  }
}

async function convertSharded(model: Checkpoint, outDir: string, opts: ConvertOptions): Promise<ConvertResult> {
  const names = kept(model.offsetKeys(), opts);
  const bytes = totalBytes(model, names);
  const progress = new Progress(2 * bytes, opts.onProgress);
  // Written and checked in a hidden folder, then swapped in whole: on any error OUT stays as it was.
  const written = await writeShards(outDir, shapesOf(model, names), reader(model, progress), { maxShardSize: opts.maxShardSize, metadata: METADATA }, async (staged) => {
    let verified = 0;
    for (const shard of staged.filter((p) => p.endsWith(".safetensors"))) verified += await verify(shard, model, progress, opts);
    if (verified !== names.length) throw new SafetensorsError("VerifyFailed", `shards hold ${verified} tensors, expected ${names.length}`);
  });
  return { files: written, tensors: names.length, bytes, dropped: kept([...model.leaves.keys()], opts) };
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
