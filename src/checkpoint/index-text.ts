import { SafetensorsError } from "../errors.ts";
import { parseIndex, type ShardIndex } from "../format/sharded.ts";

/**
 * An index file's bytes, local or fetched, as a checked {@link ShardIndex}: strict UTF-8 (`InvalidIndex` otherwise),
 * then `parseIndex`.
 *
 * @example
 * ```ts
 * const index = decodeIndex(readSmallFile(path, MAX_INDEX_BYTES), path);
 * ```
 */
export function decodeIndex(bytes: Uint8Array, where: string): ShardIndex {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new SafetensorsError("InvalidIndex", `${where} is not valid UTF-8`);
  }
  return parseIndex(text, where);
}
