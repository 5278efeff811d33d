/**
 * What every checkpoint is, whatever it is made of: one safetensors or PyTorch file ({@link SafetensorsFile})
 * or a sharded folder ({@link ShardedFile}). Code that takes "a checkpoint" takes this interface.
 */
import type { CheckpointFormat, TensorEntry, TensorInfo } from "../format/layout.ts";
import type { Backend, ByteSource } from "../io/source.ts";
import type { SliceSpec } from "./slice.ts";
import type { Tensor } from "./tensor.ts";

export type { CheckpointFormat };

/**
 * An open checkpoint: tensors by name, read only when asked for.
 *
 * @example
 * ```ts
 * import { openCheckpoint } from "tensormap";
 * using model = await openCheckpoint("checkpoints/gpt2");
 * for (const name of model.offsetKeys()) console.log(name, model.info(name).shape);
 * ```
 */
export interface Checkpoint extends Disposable {
  /** The file it was opened through: the file itself, or the index (`model.safetensors` for one shard). */
  readonly path: string;
  readonly format: CheckpointFormat;
  /** The backend serving bytes: `"mmap"` (zero-copy views) or `"read"` (copies). */
  readonly backend: Backend;
  /** Its files in order, by name relative to `path`'s folder: one for a single file, every shard otherwise. */
  readonly files: readonly string[];
  /** `__metadata__` (of the first shard, when sharded), or null. */
  readonly metadata: Record<string, string> | null;
  /** The index's own `metadata` (`total_size`, …); null without an index. */
  readonly indexMetadata: Record<string, unknown> | null;
  /** PyTorch checkpoints' non-tensor values (epoch, hyperparameters, …) by dotted name; empty for safetensors. */
  readonly leaves: ReadonlyMap<string, unknown>;
  /** Tensor names, sorted. */
  keys(): string[];
  /** Tensor names in file order, shard by shard; only those of shard `file` when given. */
  offsetKeys(file?: string): string[];
  has(name: string): boolean;
  /** Dtype, shape, offsets and size of one tensor (and its shard's `file`, when sharded), without reading it. */
  info(name: string): TensorInfo;
  /** One tensor, with exactly its bytes. */
  tensor(name: string): Tensor;
  /** Part of a tensor, reading only the bytes it needs: per dimension `[start, end)`, an index, or `null`. */
  slice(name: string, spec: SliceSpec): Tensor;
  /** A tensor's bytes in pieces of at most `chunkBytes` (for tensors larger than one view). */
  chunks(name: string, chunkBytes?: number): Generator<Uint8Array>;
  /** Reads these tensors (default: all) ahead; settles when they are in memory. A local file's never rejects; a remote one's rejects with the fetch's error. */
  prefetch(names?: readonly string[]): Promise<void>;
  /** One of {@link files}, open (opened now if it was not), until the checkpoint closes. */
  shard(file: string): CheckpointFile;
  /**
   * Checks every file's structure as a loader would meet it (each header, and each shard against the index),
   * without reading tensor data; returns the tensor count. Shards it had to open are closed again.
   */
  verify(): number;
  /** Releases every file. Idempotent. */
  close(): void;
}

/**
 * One file of a checkpoint (a checkpoint of its own), with what layers that move bytes in bulk (devices,
 * converters) need: its byte source and where each tensor lies in it.
 *
 * @example
 * ```ts
 * import { openCheckpoint } from "tensormap";
 * using model = await openCheckpoint("checkpoints/gpt2");
 * const shard = model.shard(model.files[0]!);
 * console.log(shard.source.size, shard.entry(shard.offsetKeys()[0]!).start);
 * ```
 */
export interface CheckpointFile extends Checkpoint {
  /** The byte source behind the file. */
  readonly source: ByteSource;
  /** Settles once a `populate` asked for at open is over (at once without one). */
  readonly populated: Promise<void>;
  /** Where one tensor's bytes lie in the source. */
  entry(name: string): Readonly<TensorEntry>;
}
