import { openRead } from "./read.ts";
import type { Backend, ByteSource } from "./source.ts";

export interface SourceOptions {
  /** `"auto"` (default) maps the file where FFI is available and reads it otherwise. */
  backend?: Backend | "auto";
}

/**
 * Opens a file with the backend asked for, or the best one this runtime has.
 *
 * @example
 * ```ts
 * const src = await openSource("model.safetensors", { backend: "read" });
 * ```
 */
export async function openSource(path: string, opts: SourceOptions = {}): Promise<ByteSource> {
  return (await sourceOpener(opts))(path);
}

/**
 * Settles the backend once (loading FFI where it needs to) and returns a synchronous opener using it:
 * for readers that open many files lazily, such as sharded checkpoints.
 *
 * @example
 * ```ts
 * const openSrc = await sourceOpener({ backend: "auto" });
 * const shard = openSrc("model-00001-of-00003.safetensors");
 * ```
 */
export async function sourceOpener(_opts: SourceOptions = {}): Promise<(path: string) => ByteSource> {
  return openRead;
}
