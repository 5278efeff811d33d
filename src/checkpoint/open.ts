/**
 * The one place that decides what a checkpoint path means: a file (safetensors or PyTorch, told apart by
 * content), a folder laid out the Hugging Face way, or an index (`*.index.json`, safetensors or PyTorch).
 * `openCheckpoint`, `open` and `openSharded` all resolve paths here.
 */
import { statSync, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fromSystemError, SafetensorsError } from "../errors.ts";
import type { CheckpointFormat } from "../format/layout.ts";
import { folderFiles, indexFormat, MAX_INDEX_BYTES, type ShardIndex } from "../format/sharded.ts";
import { recoverFolder } from "../io/commit.ts";
import { sourceOpener, type SourceOptions } from "../io/open-source.ts";
import type { RemoteOptions } from "../io/remote/options.ts";
import { isRemoteUrl, showUrl } from "../io/remote/url.ts";
import { readSmallFile } from "../io/small-file.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { fileFromSource, SafetensorsFile } from "./file.ts";
import { decodeIndex } from "./index-text.ts";
import { openRemoteCheckpoint } from "./remote.ts";
import { ShardedFile } from "./sharded.ts";

export interface OpenOptions extends SourceOptions {
  /** Look in a folder for this format's files only (convert reads a folder's PyTorch files beside its safetensors). */
  format?: CheckpointFormat;
  /** For remote URLs: part size, parallelism, timeouts, retries, headers, progress, the local cache. */
  remote?: RemoteOptions;
}

/** What a path names, once resolved: one file, or an index of shards in one format. */
export type CheckpointPath = (
  | { kind: "file"; path: string }
  | { kind: "index"; path: string; format: CheckpointFormat; index: ShardIndex }
) & {
  /** Whether the path given was a folder or an index (a checkpoint of shards) rather than a file. */
  sharded: boolean;
};

/**
 * Resolves a path without opening any tensor file. A folder is searched as Hugging Face lays one out,
 * safetensors first: `model.safetensors.index.json`, `model.safetensors`, `pytorch_model.bin.index.json`, then
 * `pytorch_model.bin`. A `.json` path is an index: read (a regular file of at most 100 MB), checked, and every
 * shard it names must be there, in the format the index's name (or, failing that, its shards' names) gives.
 *
 * @example
 * ```ts
 * import { resolveCheckpoint } from "tensormap";
 * const where = resolveCheckpoint("checkpoints/gpt2");
 * console.log(where.kind, where.path); // "index", "checkpoints/gpt2/model.safetensors.index.json"
 * ```
 */
export function resolveCheckpoint(path: string, format?: CheckpointFormat): CheckpointPath {
  if (isRemoteUrl(path)) throw new SafetensorsError("InvalidArgument", `${showUrl(path)}: a URL is resolved as it is opened (openCheckpoint, open)`);
  if (statOf(path).isDirectory()) {
    const names = folderFiles(format);
    const found = names.find((f) => exists(join(path, f)));
    if (!found) throw new SafetensorsError("ENOENT", `${path} holds no checkpoint (none of ${names.join(", ")})`);
    return { ...resolveCheckpoint(join(path, found)), sharded: true };
  }
  if (!path.endsWith(".json")) return { kind: "file", path, sharded: false };
  const index = readIndex(path);
  return { kind: "index", path, format: indexFormat(basename(path), index.shards), index, sharded: true };
}


/**
 * Opens whatever `path` names as a {@link Checkpoint}: a single file, or a sharded checkpoint from its folder or
 * index (shards open when first needed).
 *
 * @example
 * ```ts
 * import { openCheckpoint } from "tensormap";
 * using model = await openCheckpoint("checkpoints/gpt2");
 * console.log(model.files.length, model.keys().length);
 * ```
 */
export async function openCheckpoint(path: string | CheckpointPath, opts: OpenOptions = {}): Promise<Checkpoint> {
  if (typeof path === "string" && isRemoteUrl(path)) return openRemoteCheckpoint(path, opts.remote, opts.format, opts);
  const where = typeof path === "string" ? resolveCheckpoint(path, opts.format) : path;
  const openSource = await sourceOpener(opts);
  if (where.kind === "file") return fileFromSource(openSource(where.path));
  return new ShardedFile(where.path, where.index, where.format, (p) => fileFromSource(openSource(p)));
}

/**
 * Opens one file: safetensors (validates the whole header, reads nothing else up front) or a PyTorch
 * checkpoint (`.bin`/`.pt`, recognised by content: its pickle is read by an allowlist, never executed). A folder
 * holding one file opens that file; a sharded checkpoint is refused (open it with `openCheckpoint`).
 *
 * @example
 * ```ts
 * import { open } from "tensormap";
 * using file = await open("model.safetensors");
 * const wte = file.tensor("wte.weight").toFloat32(); // bf16 in the file, float32 here
 * ```
 */
export async function open(path: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
  if (isRemoteUrl(path)) {
    const model = await openRemoteCheckpoint(path, opts.remote, opts.format, opts);
    if (model instanceof SafetensorsFile) return model;
    model.close();
    throw new SafetensorsError("InvalidArgument", `${model.path} is a sharded checkpoint: open it with openCheckpoint`);
  }
  const where = resolveCheckpoint(path, opts.format);
  if (where.kind === "index") {
    throw new SafetensorsError("InvalidArgument", `${path} is a sharded checkpoint (${basename(where.path)}): open it with openCheckpoint`);
  }
  return fileFromSource((await sourceOpener(opts))(where.path));
}

/**
 * Opens a checkpoint as a {@link ShardedFile}, also when it is one file (a checkpoint of one shard).
 *
 * @example
 * ```ts
 * import { openSharded } from "tensormap";
 * using model = await openSharded("checkpoints/gpt2/model.safetensors.index.json");
 * for (const name of model.keys()) console.log(name, model.info(name).file);
 * ```
 */
export async function openSharded(path: string, opts: OpenOptions = {}): Promise<ShardedFile> {
  const where = resolveCheckpoint(path, opts.format);
  const openSource = await sourceOpener(opts);
  const openShard = (p: string) => fileFromSource(openSource(p));
  if (where.kind === "index") return new ShardedFile(where.path, where.index, where.format, openShard);
  // One file: its own header is the map, and the file stays open as the one shard.
  const only = openShard(where.path);
  const name = basename(where.path);
  const index: ShardIndex = { metadata: null, weightMap: new Map(only.offsetKeys().map((n) => [n, name])), shards: [name] };
  return new ShardedFile(where.path, index, only.format, openShard, new Map([[name, only]]));
}

/**
 * Opens `path` as a checkpoint, runs `use` on it and closes it, whatever happens.
 *
 * @example
 * ```ts
 * import { withCheckpoint } from "tensormap";
 * const n = await withCheckpoint("model.safetensors", {}, (file) => file.keys().length);
 * console.log(n); // 17, and the file is closed again
 * ```
 */
export async function withCheckpoint<T>(path: string, opts: OpenOptions, use: (file: Checkpoint) => T | Promise<T>): Promise<T> {
  const file = await openCheckpoint(path, opts);
  try {
    return await use(file);
  } finally {
    file.close();
  }
}

/**
 * Reads and checks an index file before trusting it: a regular file (a FIFO would block, `/dev/zero` never
 * ends) of at most {@link MAX_INDEX_BYTES}, valid UTF-8 and a valid index, every shard it names present beside it.
 */
function readIndex(path: string): ShardIndex {
  const index = decodeIndex(readSmallFile(path, MAX_INDEX_BYTES), path);
  for (const file of index.shards) {
    if (!exists(join(dirname(path), file))) {
      throw new SafetensorsError("MissingShard", `${path} names shard ${file}, which is not in ${dirname(path)}`);
    }
  }
  return index;
}

/** One stat per path; only a missing one is looked for among the folders a dead writer set aside. */
function statOf(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    // A writer killed between setting a folder aside and moving its new version in left none: put the old one back.
    if ((e as { code?: string }).code === "ENOENT" && recoverFolder(path)) return statOf(path);
    throw fromSystemError(e, `cannot open ${path}`);
  }
}

function exists(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false }) !== undefined;
}
