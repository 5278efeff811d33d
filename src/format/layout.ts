/**
 * What a checkpoint file is made of, whatever its format: where each tensor's bytes lie, the file order, the
 * metadata. The safetensors header and the PyTorch reader both produce a {@link FileLayout}; the checkpoint
 * layer serves tensors from it.
 */
import type { ByteSource } from "../io/source.ts";
import type { DType } from "./dtypes.ts";

/** What a checkpoint's files hold: safetensors, or PyTorch pickles (read by an allowlist, never executed). */
export type CheckpointFormat = "safetensors" | "pytorch";

/** A tensor as a caller sees it, without its bytes. */
export interface TensorInfo {
  dtype: DType;
  /** Dimensions; `[]` is a scalar. */
  shape: number[];
  /** Start and end of the bytes, relative to the data buffer that follows the header. */
  dataOffsets: [number, number];
  byteLength: number;
  /** In a sharded checkpoint, the shard's file name (relative to the index's folder). */
  file?: string;
}

/** Where a tensor's bytes live in its source. */
export interface TensorEntry extends TensorInfo {
  /** Absolute offset of the first byte in the source. */
  start: number;
  /** For tensors that are not one contiguous run in the file (strided pickle views): builds the row-major bytes. */
  gather?: (source: ByteSource) => Uint8Array;
}

/** What a file is made from: where each tensor lives, the file order, and the metadata. */
export interface FileLayout {
  entries: Map<string, TensorEntry>;
  order: string[];
  metadata: Record<string, string> | null;
  /** PyTorch checkpoints: the values that are not tensors (epoch, hyperparameters, …), by dotted name. */
  leaves?: ReadonlyMap<string, unknown>;
}
