import { SafetensorsFile } from "./file.ts";
import type { FileLayout } from "../format/layout.ts";
import { headerLength, parseHeader } from "../format/header.ts";
import { openSource, type SourceOptions } from "../io/open-source.ts";
import type { ByteSource } from "../io/source.ts";
import { isPytorch, openPytorchLayout } from "../pickle/layout.ts";

export type OpenOptions = SourceOptions;

/**
 * Opens a safetensors file (validates the whole header, reads nothing else up front) or a PyTorch
 * checkpoint (`.bin`/`.pt`, recognised by content: its pickle is read by an allowlist, never executed).
 *
 * @example
 * ```ts
 * import { open } from "tensormap";
 * using file = await open("model.safetensors");
 * const wte = file.tensor("wte.weight").toFloat32();
 * ```
 */
export async function open(path: string, opts: OpenOptions = {}): Promise<SafetensorsFile> {
  return fileFromSource(await openSource(path, opts));
}

/**
 * A file over a source that is already open (synchronous, for callers that open files lazily, like
 * sharded checkpoints). Closes the source if its header is refused.
 *
 * @example
 * ```ts
 * const openSrc = await sourceOpener({});
 * const file = fileFromSource(openSrc("model-00002-of-00003.safetensors"));
 * ```
 */
export function fileFromSource(source: ByteSource): SafetensorsFile {
  try {
    return new SafetensorsFile(source, readLayout(source));
  } catch (e) {
    source.close();
    throw e;
  }
}

function readLayout(source: ByteSource): FileLayout {
  const prefix = source.bytes(0, Math.min(8, source.size));
  if (isPytorch(prefix)) return openPytorchLayout(source);
  const n = headerLength(prefix, source.size);
  const header = parseHeader(source.bytes(0, 8 + n), source.size);
  // The header's entries are fresh objects of this open, with their absolute starts: used as they are.
  return { entries: header.tensors, order: header.order, metadata: header.metadata };
}
