/**
 * The pure half of sharded checkpoints (Hugging Face convention): size strings, the index file, shard names
 * and the greedy split. No I/O here; `sharded.ts` reads and writes files with these.
 */
import { SafetensorsError } from "../errors.ts";
import type { CheckpointFormat } from "./layout.ts";

/**
 * The index file name `saveSharded` writes and a folder is searched for.
 *
 * @example
 * ```ts
 * import { INDEX_FILE, saveSharded } from "tensormap";
 * const written = await saveSharded("out", { a: { dtype: "U8", shape: [4], data: new Uint8Array(4) }, b: { dtype: "U8", shape: [4], data: new Uint8Array(4) } }, { maxShardSize: 4 });
 * console.log(written.at(-1)?.endsWith(INDEX_FILE)); // true
 * ```
 */
export const INDEX_FILE = "model.safetensors.index.json";
/** What a checkpoint that fits in one shard is called (written with no index). */
export const SINGLE_FILE = "model.safetensors";
/** The index of PyTorch pickle shards (`pytorch_model-0000i-of-0000N.bin`); same layout as {@link INDEX_FILE}. */
export const PICKLE_INDEX_FILE = "pytorch_model.bin.index.json";
/** What a PyTorch checkpoint in one file is called. */
export const PICKLE_SINGLE_FILE = "pytorch_model.bin";
/** What a model folder is searched for, in this order (Hugging Face's own preference: safetensors first). */
export const FOLDER_FILES: ReadonlyArray<readonly [name: string, format: CheckpointFormat]> = [
  [INDEX_FILE, "safetensors"],
  [SINGLE_FILE, "safetensors"],
  [PICKLE_INDEX_FILE, "pytorch"],
  [PICKLE_SINGLE_FILE, "pytorch"],
];
/**
 * The names a model folder is searched for, in order; only `format`'s when given.
 *
 * @example
 * ```ts
 * folderFiles("pytorch"); // ["pytorch_model.bin.index.json", "pytorch_model.bin"]
 * ```
 */
export function folderFiles(format?: CheckpointFormat): string[] {
  return FOLDER_FILES.filter(([, f]) => !format || f === format).map(([name]) => name);
}

/** Largest index (or other side file) read: the header's limit, far above any real index's size. */
export const MAX_INDEX_BYTES = 100_000_000;
/** How deep the index's `metadata` may nest (real ones are flat): deeper is refused, not walked. */
const MAX_METADATA_DEPTH = 32;

/** What a file name says a shard holds. */
const SHARD_FORMATS: ReadonlyArray<readonly [RegExp, CheckpointFormat]> = [
  [/\.safetensors$/, "safetensors"],
  [/\.(bin|pt|pth)$/, "pytorch"],
];

/**
 * What an index indexes, from its own name (`*.safetensors.index.json`, `*.bin.index.json`) or, for another
 * name, its shards' names; every shard's name must agree. A safetensors index naming a pickle (`.bin`) is
 * refused, as the reference refuses it.
 *
 * @example
 * ```ts
 * indexFormat("model.safetensors.index.json", ["model-00001-of-00002.safetensors"]); // "safetensors"
 * indexFormat("model.safetensors.index.json", ["pytorch_model.bin"]); // throws InvalidIndex
 * ```
 */
export function indexFormat(indexName: string, shards: readonly string[]): CheckpointFormat {
  const formatOf = (name: string) => SHARD_FORMATS.find(([pattern]) => pattern.test(name))?.[1];
  const named = formatOf(indexName.replace(/\.index\.json$/, ""));
  const format = named ?? formatOf(shards[0] ?? "");
  for (const shard of shards) {
    if (format === undefined || formatOf(shard) !== format) {
      const want = format ? `a ${format} shard` : "a .safetensors or .bin shard";
      throw new SafetensorsError("InvalidIndex", `${indexName} names ${JSON.stringify(shard)}, not ${want}`);
    }
  }
  return format!;
}

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12,
  KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40,
};

/**
 * Turns a shard size limit into bytes: a number of bytes, or a string with a decimal (`"5GB"` = 5·10^9)
 * or binary (`"5GiB"` = 5·2^30) unit. Fractions round down to a whole byte.
 *
 * @example
 * ```ts
 * import { parseSize } from "tensormap";
 * parseSize("1.5GB"); // 1_500_000_000
 * parseSize("500MiB"); // 524_288_000
 * parseSize(4096); // 4096
 * ```
 */
export function parseSize(size: number | string): number {
  let bytes = NaN;
  if (typeof size === "number") bytes = size;
  else if (typeof size === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(size);
    const unit = m ? UNITS[(m[2] || "B").toUpperCase()] : undefined;
    if (m && unit !== undefined) bytes = Math.floor(Number(m[1]) * unit);
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new SafetensorsError(
      "InvalidArgument",
      `invalid shard size ${JSON.stringify(size)}: want a positive byte count or a string like "5GB" or "500MiB"`,
    );
  }
  return bytes;
}

/** A parsed `model.safetensors.index.json` (or `pytorch_model.bin.index.json`). */
export interface ShardIndex {
  /** The index's `metadata` object (null-prototype; `total_size` among others), or null when absent. */
  metadata: Record<string, unknown> | null;
  /** Tensor name → shard file name, in the index's order. */
  weightMap: Map<string, string>;
  /** Shard file names, each once, sorted (the zero-padded numbers make this the shard order). */
  shards: string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses and validates an index file's text. Shard names must be plain file names in the same folder:
 * a `weight_map` pointing at `../x` or `/etc/x` is refused rather than followed.
 *
 * @example
 * ```ts
 * const index = parseIndex('{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00001.safetensors"}}', "index.json");
 * index.weightMap.get("a"); // "model-00001-of-00001.safetensors"
 * ```
 */
export function parseIndex(text: string, where: string): ShardIndex {
  const bad = (why: string) => new SafetensorsError("InvalidIndex", `${where}: ${why}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw bad("not a JSON object");
  const { metadata: rawMeta, weight_map: rawMap } = json;
  if (rawMeta !== undefined && rawMeta !== null && !isObject(rawMeta)) throw bad('"metadata" is not an object');
  if (!isObject(rawMap)) throw bad('"weight_map" is missing or not an object');
  if (rawMeta && depth(rawMeta) > MAX_METADATA_DEPTH) throw bad(`"metadata" nests deeper than ${MAX_METADATA_DEPTH} levels`);
  const metadata = rawMeta ? Object.assign(Object.create(null) as Record<string, unknown>, rawMeta) : null;
  const total = metadata?.total_size;
  if (total !== undefined && !(Number.isSafeInteger(total) && (total as number) >= 0)) {
    throw bad('"metadata.total_size" is not a byte count');
  }
  const weightMap = new Map<string, string>();
  for (const [name, shard] of Object.entries(rawMap)) {
    if (typeof shard !== "string") throw bad(`weight_map entry ${JSON.stringify(name)} is not a file name`);
    if (shard === "" || shard === "." || shard === ".." || /[/\\\0]/.test(shard)) {
      throw bad(`weight_map entry ${JSON.stringify(name)} names ${JSON.stringify(shard)}, not a file in the same folder`);
    }
    weightMap.set(name, shard);
  }
  if (weightMap.size === 0) throw bad('"weight_map" is empty');
  return { metadata, weightMap, shards: [...new Set(weightMap.values())].sort() };
}

/** How deeply a parsed JSON value nests, counted without recursion (the stack is not the limit). */
function depth(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    deepest = Math.max(deepest, d);
    if (deepest > MAX_METADATA_DEPTH) return deepest;
    for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return deepest;
}

/**
 * The Hugging Face shard file name: 1-based, five digits.
 *
 * @example
 * ```ts
 * shardName(0, 3); // "model-00001-of-00003.safetensors"
 * ```
 */
export function shardName(index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/** Matches what a sharded save writes, so a new save can clear a previous one's leftovers. */
export const SAVED_FILE = /^(model\.safetensors|model-\d{5}-of-\d{5}\.safetensors|model\.safetensors\.index\.json)$/;

/**
 * The greedy split: tensors in insertion order fill a shard until the next one would push it past
 * `maxBytes`; a tensor larger than the limit gets a shard of its own. Sizes count tensor data only,
 * as Hugging Face does.
 *
 * @example
 * ```ts
 * planShards([["a", 6], ["b", 6], ["c", 20], ["d", 1]], 10); // [["a"], ["b"], ["c"], ["d"]]
 * planShards([["a", 4], ["b", 4], ["c", 4]], 10); // [["a", "b"], ["c"]]
 * ```
 */
export function planShards(sizes: Iterable<readonly [name: string, bytes: number]>, maxBytes: number): string[][] {
  const plan: string[][] = [];
  let current: string[] = [];
  let used = 0;
  for (const [name, bytes] of sizes) {
    if (current.length > 0 && used + bytes > maxBytes) {
      plan.push(current);
      current = [];
      used = 0;
    }
    current.push(name);
    used += bytes;
  }
  if (current.length > 0 || plan.length === 0) plan.push(current);
  return plan;
}

/**
 * The index file's text, laid out as `JSON.stringify(index, null, 2)` would, but with `weight_map` in the
 * order given: a plain object would move integer-like tensor names ("0", "10") to the front.
 *
 * @example
 * ```ts
 * formatIndex(8, [["a", "model-00001-of-00001.safetensors"]]);
 * ```
 */
export function formatIndex(totalSize: number, weightMap: Iterable<readonly [name: string, file: string]>): string {
  const entries = [...weightMap].map(([name, file]) => `    ${JSON.stringify(name)}: ${JSON.stringify(file)}`);
  const map = entries.length ? `{\n${entries.join(",\n")}\n  }` : "{}";
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": ${map}\n}\n`;
}
