import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fromSystemError, SafetensorsError } from "../errors.ts";

/**
 * The safetensors files of a checkpoint path: a file is itself; a directory is its shards as
 * `*.safetensors.index.json` lists them (in first-use order), else `model.safetensors`, else every `*.safetensors`.
 *
 * @example
 * ```ts
 * checkpointFiles("llama/"); // ["llama/model-00001-of-00002.safetensors", "llama/model-00002-of-00002.safetensors"]
 * ```
 */
export function checkpointFiles(path: string): string[] {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (e) {
    throw fromSystemError(e, `cannot open ${path}`);
  }
  if (!isDir) return [path];
  const names = readdirSync(path).sort();
  const indexes = names.filter((n) => n.endsWith(".safetensors.index.json"));
  if (indexes.length > 1 && !indexes.includes("model.safetensors.index.json")) {
    throw new SafetensorsError("InvalidIndex", `${path} holds several index files (${indexes.join(", ")}); name one`);
  }
  const index = indexes.includes("model.safetensors.index.json") ? "model.safetensors.index.json" : indexes[0];
  if (index) return shardsOf(join(path, index), path);
  if (names.includes("model.safetensors")) return [join(path, "model.safetensors")];
  const all = names.filter((n) => n.endsWith(".safetensors")).map((n) => join(path, n));
  if (!all.length) throw new SafetensorsError("MissingShard", `no .safetensors files in ${path}`);
  return all;
}

function shardsOf(indexPath: string, dir: string): string[] {
  let map: unknown;
  try {
    map = (JSON.parse(readFileSync(indexPath, "utf8")) as { weight_map?: unknown }).weight_map;
  } catch (e) {
    throw new SafetensorsError("InvalidIndex", `${indexPath} is not a JSON index: ${(e as Error).message}`);
  }
  if (typeof map !== "object" || map === null) throw new SafetensorsError("InvalidIndex", `${indexPath} has no weight_map object`);
  const shards = [...new Set(Object.values(map))];
  const files: string[] = [];
  for (const shard of shards) {
    if (typeof shard !== "string" || shard.includes("/") || shard.startsWith(".")) {
      throw new SafetensorsError("InvalidIndex", `${indexPath} names an invalid shard ${JSON.stringify(shard)}`);
    }
    const file = join(dir, shard);
    if (!existsSync(file)) throw new SafetensorsError("MissingShard", `${indexPath} names ${shard}, which is not in ${dir}`);
    files.push(file);
  }
  return files;
}
