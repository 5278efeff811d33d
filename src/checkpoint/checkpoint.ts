/** What a checkpoint path opens: a sharded folder or index, or a single file (safetensors or PyTorch). */
import { statSync } from "node:fs";
import type { SafetensorsFile } from "./file.ts";
import { open, type OpenOptions } from "./open.ts";
import { openSharded, type ShardedFile } from "./sharded.ts";

export type Checkpoint = SafetensorsFile | ShardedFile;

/**
 * Opens `path` as a sharded checkpoint when it is a folder or a `.json` index, as one file otherwise.
 *
 * @example
 * ```ts
 * using model = await openCheckpoint("checkpoints/gpt2");
 * ```
 */
export async function openCheckpoint(path: string, opts: OpenOptions = {}): Promise<Checkpoint> {
  // A missing path falls through to open(), which names the error.
  const isDir = (() => {
    try {
      return statSync(path).isDirectory();
    } catch {
      return false;
    }
  })();
  return isDir || path.endsWith(".json") ? openSharded(path, opts) : open(path, opts);
}

/**
 * Opens `path`, runs `use` on it and closes it, whatever happens.
 *
 * @example
 * ```ts
 * const n = await withPath("model.safetensors", {}, (file) => file.keys().length);
 * ```
 */
export async function withPath<T>(path: string, opts: OpenOptions, use: (file: Checkpoint) => T): Promise<T> {
  const file = await openCheckpoint(path, opts);
  try {
    return use(file);
  } finally {
    file.close();
  }
}
