/**
 * PyTorch checkpoints → safetensors. A `.bin`/`.pt` file becomes one `.safetensors` file; a folder or a
 * `pytorch_model.bin.index.json` of pickle shards becomes a folder of shards named by the Hugging Face
 * convention. Output is written under temporary names, verified by re-reading every tensor, and only then
 * renamed into place: on any error no output file is left behind. Tensors are read, written and verified
 * one at a time, so converting needs memory for the largest tensor, not the checkpoint.
 */
import { Buffer } from "node:buffer";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fromSystemError, namingFile, SafetensorsError } from "../errors.ts";
import type { SafetensorsFile } from "../checkpoint/file.ts";
import { PICKLE_INDEX_FILE, PICKLE_SINGLE_FILE } from "../format/sharded.ts";
import { commit, planHeader, writeStreamed, type TensorShape } from "../format/writer.ts";
import { open, type OpenOptions } from "../checkpoint/open.ts";
import { readIndex, removeLeftovers, writeShards } from "../checkpoint/sharded.ts";
import { isPytorch } from "../pickle/layout.ts";

export interface ConvertOptions extends OpenOptions {
  /** Sharded output only: the largest shard's data size, bytes or `"5GB"`/`"5GiB"`. Default `"5GB"`. */
  maxShardSize?: number | string;
  /** Called as bytes are converted and then verified; `done` reaches `total` at the end. */
  onProgress?: (done: number, total: number) => void;
}

export interface ConvertResult {
  /** The files written, in order (the index last for sharded output). */
  files: string[];
  tensors: number;
  /** Tensor data bytes written. */
  bytes: number;
  /** The checkpoint's non-tensor values (epoch, hyperparameters, …) by dotted name: safetensors holds none of them. */
  dropped: string[];
}

const METADATA = { format: "pt" };

/**
 * Converts a PyTorch checkpoint to safetensors. `inPath` a file → `outPath` is the `.safetensors` file to
 * write; `inPath` a folder or pickle index → `outPath` is the folder to write shards and
 * `model.safetensors.index.json` into. Tied weights are written as separate tensors; non-tensor values
 * (epoch, hyperparameters) are not written, and the result names them. A file OUT may not be IN itself.
 *
 * @example
 * ```ts
 * await convert("pytorch_model.bin", "model.safetensors", { onProgress: (d, t) => bar.update(d / t) });
 * await convert("checkpoints/llama", "out/llama", { maxShardSize: "2GB" });
 * ```
 */
export async function convert(inPath: string, outPath: string, opts: ConvertOptions = {}): Promise<ConvertResult> {
  const shards = pickleShards(inPath);
  if (!shards) return convertFile(inPath, outPath, opts);
  return convertSharded(shards, outPath, opts);
}

/** The pickle shards a folder or index names, in order; undefined when `inPath` is a single file. */
function pickleShards(inPath: string): { files: string[]; weightMap?: Map<string, string> } | undefined {
  let isDir: boolean;
  try {
    isDir = statSync(inPath).isDirectory();
  } catch (e) {
    throw fromSystemError(e, `cannot read ${inPath}`);
  }
  let index = inPath;
  if (isDir) {
    index = join(inPath, PICKLE_INDEX_FILE);
    if (!existsSync(index)) {
      const single = join(inPath, PICKLE_SINGLE_FILE);
      if (existsSync(single)) return { files: [single] };
      throw new SafetensorsError("InvalidArgument", `${inPath} holds neither ${PICKLE_INDEX_FILE} nor ${PICKLE_SINGLE_FILE}`);
    }
  } else if (!inPath.endsWith(".index.json")) {
    return undefined;
  }
  const { weightMap, shards } = readIndex(index);
  return { files: shards.map((f) => join(dirname(index), f)), weightMap };
}

async function openPickle(path: string, opts: OpenOptions): Promise<SafetensorsFile> {
  const file = await open(path, opts);
  if (!isPytorch(file.source.bytes(0, Math.min(8, file.source.size)))) {
    file.close();
    throw new SafetensorsError("InvalidArgument", `${path} is not a PyTorch checkpoint`);
  }
  return file;
}

/** Every tensor of the given files by name, with the file that holds it; a name in two files is an error. */
function tensorsOf(files: SafetensorsFile[]): Map<string, SafetensorsFile> {
  const out = new Map<string, SafetensorsFile>();
  for (const f of files) {
    for (const name of f.offsetKeys()) {
      if (out.has(name)) throw new SafetensorsError("InvalidIndex", `tensor ${name} appears in more than one shard`);
      out.set(name, f);
    }
  }
  return out;
}

/** Dtype, shape and size of each tensor, for planning headers before any data is read. */
function shapesOf(tensors: Map<string, SafetensorsFile>): Array<[string, TensorShape]> {
  return [...tensors].map(([name, f]) => {
    const { dtype, shape, byteLength } = f.info(name);
    return [name, { dtype, shape, byteLength }];
  });
}

/** Reads one tensor from its checkpoint as it is about to be written (a copy under the read backend). */
function reader(tensors: Map<string, SafetensorsFile>, progress: Progress): (name: string) => Uint8Array {
  return (name) => {
    const bytes = tensors.get(name)!.tensor(name).bytes;
    progress.add(bytes.byteLength);
    return bytes;
  };
}

/**
 * Re-reads a written file and checks every tensor against the checkpoint it came from, one tensor at a
 * time, so verifying needs no more memory than writing.
 */
async function verify(path: string, tensors: Map<string, SafetensorsFile>, names: readonly string[], progress: Progress, opts: OpenOptions): Promise<void> {
  const file = await open(path, opts);
  try {
    if (file.offsetKeys().length !== names.length) throw new SafetensorsError("VerifyFailed", `${path} holds ${file.offsetKeys().length} tensors, expected ${names.length}`);
    for (const name of names) {
      const want = tensors.get(name)!.tensor(name);
      const got = file.tensor(name);
      const a = Buffer.from(got.bytes.buffer, got.bytes.byteOffset, got.bytes.byteLength);
      const b = Buffer.from(want.bytes.buffer, want.bytes.byteOffset, want.bytes.byteLength);
      if (got.dtype !== want.dtype || got.shape.join() !== want.shape.join() || !a.equals(b)) {
        throw new SafetensorsError("VerifyFailed", `${path}: tensor ${name} did not read back as written`);
      }
      progress.add(a.byteLength);
    }
  } finally {
    file.close();
  }
}

class Progress {
  done = 0;
  constructor(readonly total: number, readonly report?: (done: number, total: number) => void) {}
  add(n: number): void {
    this.done += n;
    this.report?.(this.done, this.total);
  }
}

function totalBytes(files: SafetensorsFile[]): number {
  let n = 0;
  for (const f of files) for (const name of f.offsetKeys()) n += f.info(name).byteLength;
  return n;
}

async function convertFile(inPath: string, outPath: string, opts: ConvertOptions): Promise<ConvertResult> {
  const file = await openPickle(inPath, opts);
  const tmp = join(dirname(outPath), `.${basename(outPath)}.${process.pid}.converting`);
  try {
    // After the open: IN is known to be there when OUT is compared with it.
    requireWritableFile(inPath, outPath);
    const tensors = tensorsOf([file]);
    const bytes = totalBytes([file]);
    const progress = new Progress(2 * bytes, opts.onProgress);
    const { header, order } = planHeader(shapesOf(tensors), METADATA);
    writeStreamed(tmp, header, order, reader(tensors, progress));
    await verify(tmp, tensors, order, progress, opts);
    commit(tmp, outPath);
    return { files: [outPath], tensors: tensors.size, bytes, dropped: [...file.leaves.keys()] };
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fromSystemError(e, `cannot convert ${inPath} to ${outPath}`);
  } finally {
    file.close();
  }
}

async function convertSharded(shards: { files: string[]; weightMap?: Map<string, string> }, outDir: string, opts: ConvertOptions): Promise<ConvertResult> {
  const files: SafetensorsFile[] = [];
  let tmpDir: string | undefined;
  let madeOut = false;
  let done = false;
  try {
    for (const path of shards.files) {
      try {
        files.push(await openPickle(path, opts));
      } catch (e) {
        throw namingFile(e, basename(path));
      }
    }
    if (shards.weightMap) checkIndex(files, shards.weightMap);
    const tensors = tensorsOf(files);
    const bytes = totalBytes(files);
    const progress = new Progress(2 * bytes, opts.onProgress);
    try {
      madeOut = mkdirSync(outDir, { recursive: true }) !== undefined;
      tmpDir = mkdtempSync(join(outDir, ".tensormap-convert-"));
    } catch (e) {
      throw fromSystemError(e, `cannot create ${outDir}`);
    }
    const written = writeShards(tmpDir, shapesOf(tensors), reader(tensors, progress), { maxShardSize: opts.maxShardSize, metadata: METADATA });
    let verified = 0;
    for (const shard of written.filter((p) => p.endsWith(".safetensors"))) {
      const names = await shardKeys(shard, opts);
      await verify(shard, tensors, names, progress, opts);
      verified += names.length;
    }
    if (verified !== tensors.size) throw new SafetensorsError("VerifyFailed", `shards hold ${verified} tensors, expected ${tensors.size}`);
    // Everything is written and checked: move it into place, then drop what an earlier save left there.
    for (const p of written) commit(p, join(outDir, basename(p)));
    removeLeftovers(outDir, new Set(written.map((p) => basename(p))));
    done = true;
    const dropped = files.flatMap((f) => [...f.leaves.keys()]);
    return { files: written.map((p) => join(outDir, basename(p))), tensors: tensors.size, bytes, dropped };
  } finally {
    if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
    // A folder this conversion created is not left behind empty when it fails.
    if (madeOut && !done) rmSync(outDir, { recursive: true, force: true });
    for (const f of files) f.close();
  }
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

async function shardKeys(path: string, opts: OpenOptions): Promise<string[]> {
  const f = await open(path, opts);
  try {
    return f.offsetKeys();
  } finally {
    f.close();
  }
}

/** Each shard must hold exactly the tensors the index assigns to it. */
function checkIndex(files: SafetensorsFile[], weightMap: Map<string, string>): void {
  let count = 0;
  for (const f of files) {
    for (const name of f.offsetKeys()) {
      if (weightMap.get(name) !== basename(f.path)) throw new SafetensorsError("InvalidIndex", `tensor ${name} is in ${basename(f.path)}, but the index says ${weightMap.get(name) ?? "nothing"}`);
      count++;
    }
  }
  if (count !== weightMap.size) throw new SafetensorsError("InvalidIndex", `the index names ${weightMap.size} tensors, the shards hold ${count}`);
}
