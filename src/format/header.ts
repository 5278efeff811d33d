/**
 * The safetensors header: `u64 LE N` · `N bytes of UTF-8 JSON` · data. One pass that accepts and rejects
 * exactly what safetensors 0.8 does, with its error names as codes (DESIGN.md §1).
 */
import { SafetensorsError } from "../errors.ts";
import { DTYPES, type DType } from "./dtypes.ts";
import { JsonReader } from "./json.ts";
import type { TensorEntry } from "./layout.ts";
import { compareNames } from "./names.ts";

/** The reference refuses headers above 100 MB. */
export const MAX_HEADER_SIZE = 100_000_000;


export interface Header {
  /** N: the JSON's length in bytes, padding included. */
  headerSize: number;
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
  /** `__metadata__` as a null-prototype record, or null when absent. */
  metadata: Record<string, string> | null;
  tensors: Map<string, TensorEntry>;
  /** Tensor names in file order (by data offsets). */
  order: string[];
}

// Deno decodes UTF-8 three times faster when it may replace bad bytes (2.6 MB: 1 ms against 3). Without a
// U+FFFD in the result every byte was valid; with one, the strict decoder tells a real U+FFFD from a bad byte.
const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeUtf8(bytes: Uint8Array): string {
  const text = lenient.decode(bytes);
  if (!text.includes("\uFFFD")) return text;
  try {
    return strict.decode(bytes);
  } catch {
    throw new SafetensorsError("InvalidHeader", "header is not valid UTF-8");
  }
}

/**
 * Reads the 8-byte length prefix and checks it against the file size.
 * Returns N, the header's length in bytes.
 */
export function headerLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new SafetensorsError("HeaderTooSmall", `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  // Not the length itself: any file's first 8 bytes read as one (a text file's as its first 8 characters),
  // and a path that is not a checkpoint (a symlinked shard) must not show its content. A length under the
  // limit has its top 4 bytes at zero (no text holds NUL): a size worth stating, not content.
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError("HeaderTooLarge", `the header length in the first 8 bytes is over the ${MAX_HEADER_SIZE}-byte limit`);
  }
  if (8n + n > BigInt(fileSize)) {
    throw new SafetensorsError("InvalidHeaderLength", `header length ${n} runs past the end of the ${fileSize}-byte file`);
  }
  return Number(n);
}

/**
 * Parses and validates a whole header. `bytes` holds at least the first `8 + N` bytes of the file.
 * Tensors sharing offsets (zero-size tensors at one spot) come in name order (UTF-8 byte order) in
 * `order`, and that order also decides which of them is checked first.
 *
 * @example
 * ```ts
 * import { openSource, parseHeader } from "tensormap";
 * const src = await openSource("model.safetensors");
 * const header = parseHeader(src.bytes(0, src.size), src.size); // the first 8 + N bytes would do
 * console.log(header.order.length, header.dataStart); // 17 tensors, data from byte 1400
 * src.close();
 * ```
 */
export function parseHeader(bytes: Uint8Array, fileSize: number): Header {
  const text = headerText(bytes, fileSize);
  return readPlain(text, fileSize) ?? readStrict(text, fileSize);
}

/**
 * The two readers behind {@link parseHeader}, each alone, for the test that holds them to one answer
 * (test/format/header-differential.test.ts). Not part of the public API: src/index.ts does not export it.
 *
 * @example
 * ```ts
 * const fast = headerReaders.fast(bytes, bytes.byteLength); // null: the strict reader decides
 * const strict = headerReaders.strict(bytes, bytes.byteLength);
 * ```
 */
export const headerReaders = {
  /** The `JSON.parse` fast path: the header, or null where it leaves the input to the strict reader. */
  fast: (bytes: Uint8Array, fileSize: number): Header | null => readPlain(headerText(bytes, fileSize), fileSize),
  /** The strict reader, which gives every error. */
  strict: (bytes: Uint8Array, fileSize: number): Header => readStrict(headerText(bytes, fileSize), fileSize),
};

interface HeaderText {
  /** N, as the length prefix gives it. */
  n: number;
  text: string;
}

/** The prefix checked and the JSON decoded: what both readers start from. */
function headerText(bytes: Uint8Array, fileSize: number): HeaderText {
  const n = headerLength(bytes, fileSize);
  if (bytes.byteLength < 8 + n) {
    throw new SafetensorsError("InvalidHeaderLength", `need ${8 + n} header bytes, got ${bytes.byteLength}`);
  }
  return { n, text: decodeUtf8(bytes.subarray(8, 8 + n)) };
}

function readStrict({ n, text }: HeaderText, fileSize: number): Header {
  const { metadata, entries } = readEntries(new JsonReader(text));
  return { headerSize: n, dataStart: 8 + n, metadata, ...validate(entries, 8 + n, fileSize - 8 - n) };
}

/** A tensor entry as read, before validation: offsets and dimensions past 2^53 come as bigints. */
interface Entry {
  name: string;
  dtype: DType;
  shape: Array<number | bigint>;
  start: number | bigint;
  end: number | bigint;
}

type Entries = { metadata: Record<string, string> | null; entries: Entry[] };
type Tensors = { tensors: Map<string, TensorEntry>; order: string[] };

/** A number that is not a plain unsigned integer: a sign, a fraction or an exponent. JSON.parse takes them all. */
const NOT_UNSIGNED = /[[,][ \t\n\r]*(?:-|[0-9]+[.eE])/;
const QUOTE = /"/g;

/**
 * The fast path, for valid headers as writers write them: no escapes, no number but unsigned integers below
 * 2^53, no duplicate keys, entries with exactly the three fields. On such text `JSON.parse` (native, fast even
 * before the JIT warms up) agrees with serde, and one pass over its result both validates and builds the
 * entries. Anything else, every invalid header included, returns null and goes through the strict reader and
 * {@link validate}, which produce every error. A cold process opens a 20,000-tensor header before any of this
 * is compiled: the checks are native, and each entry costs one object.
 */
function readPlain({ n, text }: HeaderText, fileSize: number): Header | null {
  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  // Without escapes every quote delimits a string, and numbers sit only in arrays (any other place fails a
  // type check below), right after `[` or `,`.
  if (text.includes("\\") || NOT_UNSIGNED.test(text)) return null;
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof root !== "object" || root === null || Array.isArray(root)) return null;
  let strings = 0;
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, TensorEntry>();
  const order: string[] = [];
  let cursor = 0;
  let previous = -1;
  let sorted = true;
  const fields = root as Record<string, unknown>;
  for (const name in fields) {
    const value = fields[name] as Record<string, unknown>;
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    if (name === "__metadata__") {
      metadata = Object.create(null) as Record<string, string>;
      for (const k in value) {
        if (typeof value[k] !== "string") return null;
        metadata[k] = value[k];
        strings += 2;
      }
      strings++;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = value;
    const info = typeof dtype === "string" ? DTYPES.get(dtype) : undefined;
    if (!info || !Array.isArray(shape) || !isOffsets(offsets)) return null;
    let bits = info.bits;
    for (let i = 0; i < shape.length; i++) {
      const d = shape[i];
      if (typeof d !== "number" || d > Number.MAX_SAFE_INTEGER || (bits *= d) > Number.MAX_SAFE_INTEGER) return null;
    }
    const [start, end] = offsets;
    if (bits % 8 !== 0 || end! - start! !== bits / 8) return null;
    // A zero-size tensor on the previous one's spot is a tie: in order only when the names are.
    if (start !== cursor || (start === end && start === previous && compareNames(order[order.length - 1]!, name) > 0)) sorted = false;
    previous = start!;
    cursor = end!;
    tensors.set(name, { dtype: info.name, shape, dataOffsets: offsets, byteLength: bits / 8, start: dataStart + start! });
    order.push(name);
    // The name, three field names and the dtype.
    strings += 5;
  }
  // Every string of the text was seen once: JSON.parse dropped no duplicate, and no entry has a fourth field.
  if ((text.match(QUOTE)?.length ?? 0) !== 2 * strings) return null;
  if (sorted) return cursor === dataSize ? { headerSize: n, dataStart, metadata, tensors, order } : null;
  // Keys in another order than the data (the reference writer's own files): the data's order, then its chain.
  const byOffset = [...tensors].sort(([x, a], [y, b]) => a.start - b.start || a.byteLength - b.byteLength || compareNames(x, y));
  cursor = 0;
  for (const [, e] of byOffset) {
    if (e.dataOffsets[0] !== cursor) return null;
    cursor = e.dataOffsets[1];
  }
  return cursor === dataSize ? { headerSize: n, dataStart, metadata, tensors: new Map(byOffset), order: byOffset.map(([name]) => name) } : null;
}

/** `[start, end]` as integers that doubles hold exactly (the text has no sign, fraction or exponent). */
function isOffsets(v: unknown): v is [number, number] {
  return Array.isArray(v) && v.length === 2 && isSafe(v[0]) && isSafe(v[1]);
}

const isSafe = (n: unknown): n is number => typeof n === "number" && n <= Number.MAX_SAFE_INTEGER;

/** Maps the JSON onto the header's types as serde does (the `__metadata__` field, then a flattened map of tensors). */
function readEntries(r: JsonReader): Entries {
  if (r.peek() !== "object") r.fail("header is not a JSON object");
  let metadata: Record<string, string> | null = null;
  let sawMetadata = false;
  const entries = new Map<string, Entry>();
  if (r.enter("object", 0)) {
    do {
      const key = r.key();
      if (key === "__metadata__") {
        if (sawMetadata) r.fail("duplicate field `__metadata__`");
        sawMetadata = true;
        metadata = readMetadata(r);
      } else {
        // Duplicate tensor names: each must parse, the last one wins (a map insert in the reference).
        entries.set(key, readTensor(r, key));
      }
    } while (r.more("object"));
  }
  r.end();
  return { metadata, entries: [...entries.values()] };
}

function readMetadata(r: JsonReader): Record<string, string> | null {
  if (r.null()) return null;
  if (r.peek() !== "object") r.fail("`__metadata__` is not a map of strings");
  const out: Record<string, string> = Object.create(null);
  if (r.enter("object", 1)) {
    do {
      const k = r.key();
      if (r.peek() !== "string") r.fail(`\`__metadata__\` value for ${quote(k)} is not a string`);
      out[k] = r.string();
    } while (r.more("object"));
  }
  return out;
}

const FIELDS = ["dtype", "shape", "data_offsets"] as const;

/** A tensor entry: a map with the three fields (others ignored), or serde's sequence form `[dtype, shape, offsets]`. */
function readTensor(r: JsonReader, name: string): Entry {
  // A header can hold 100,000 entries: no closures here, and messages are built only on failure.
  let dtype: DType | undefined;
  let shape: Array<number | bigint> | undefined;
  let offsets: Array<number | bigint> | undefined;
  const kind = r.peek();
  if (kind !== "object" && kind !== "array") r.fail(`${where(name)}: expected a map`);
  let count = 0;
  if (r.enter(kind, 1)) {
    do {
      const field = kind === "object" ? r.key() : count < 3 ? FIELDS[count]! : r.fail(`${where(name)}: more than 3 fields`);
      count++;
      if (field === "dtype") {
        if (dtype !== undefined) r.fail(`${where(name)}: duplicate field \`dtype\``);
        dtype = readDtype(r, name);
      } else if (field === "shape") {
        if (shape !== undefined) r.fail(`${where(name)}: duplicate field \`shape\``);
        shape = readU64s(r, name, "shape");
      } else if (field === "data_offsets") {
        if (offsets !== undefined) r.fail(`${where(name)}: duplicate field \`data_offsets\``);
        offsets = readU64s(r, name, "data_offsets");
      } else {
        r.skip(2);
      }
    } while (r.more(kind));
  }
  if (kind === "array" && count !== 3) r.fail(`${where(name)}: expected 3 fields, got an array of ${count}`);
  // serde reports the first missing field in declaration order.
  const missing = dtype === undefined ? 0 : shape === undefined ? 1 : offsets === undefined ? 2 : -1;
  if (missing >= 0) r.fail(`${where(name)}: missing field \`${FIELDS[missing as 0 | 1 | 2]}\``);
  if (offsets!.length !== 2) r.fail(`${where(name)}: \`data_offsets\` must hold 2 numbers, not ${offsets!.length}`);
  return { name, dtype: dtype!, shape: shape!, start: offsets![0]!, end: offsets![1]! };
}

const where = (name: string) => `tensor ${quote(name)}`;

/** A name from the header in a message: quoted, and cut short, since one name can run to megabytes. */
function quote(s: string): string {
  if (s.length <= 64) return JSON.stringify(s);
  // Cut before a surrogate pair, never inside one.
  const cut = s.charCodeAt(63) >= 0xd800 && s.charCodeAt(63) <= 0xdbff ? 63 : 64;
  return `${JSON.stringify(s.slice(0, cut))}… (${s.length} characters)`;
}

/** A dtype is a variant name, or serde's map form of a unit variant: `{"F32": null}`. */
function readDtype(r: JsonReader, tensor: string): DType {
  let name: string | undefined;
  const kind = r.peek();
  if (kind === "string") {
    name = r.string();
  } else if (kind === "object" && r.enter("object", 2)) {
    name = r.key();
    if (!r.null() || r.more("object")) r.fail(`${where(tensor)}: \`dtype\` is not a dtype name`);
  }
  if (name === undefined) return r.fail(`${where(tensor)}: \`dtype\` is not a string`);
  return DTYPES.get(name)?.name ?? r.fail(`${where(tensor)}: unknown dtype ${quote(name)}`);
}

/** Unsigned 64-bit integers: plain numbers when below 2^53, bigints above. */
function readU64s(r: JsonReader, tensor: string, field: string): Array<number | bigint> {
  if (r.peek() !== "array") r.fail(`${where(tensor)}: \`${field}\` is not an array`);
  const out: Array<number | bigint> = [];
  if (r.enter("array", 2)) {
    do out.push(r.u64() ?? r.fail(`${where(tensor)}: \`${field}\` holds something other than an unsigned 64-bit integer`));
    while (r.more("array"));
  }
  return out;
}

const U64_MAX = (1n << 64n) - 1n;

const lt = (a: number | bigint, b: number | bigint) => a < b;

/** Elements × bits, exactly, or null when a partial product passes u64 (the reference's `checked_mul` order). */
function bitCount(shape: Array<number | bigint>, bits: number): number | bigint | null {
  let elements: number | bigint = 1;
  for (const d of shape) {
    if (typeof elements === "number" && typeof d === "number" && elements * d <= Number.MAX_SAFE_INTEGER) elements *= d;
    else if ((elements = BigInt(elements) * BigInt(d)) > U64_MAX) return null;
  }
  const total = typeof elements === "number" && elements * bits <= Number.MAX_SAFE_INTEGER ? elements * bits : BigInt(elements) * BigInt(bits);
  return typeof total === "bigint" && total > U64_MAX ? null : total;
}

/**
 * The reference's `validate`: walk tensors by `(start, end)`; each must start where the last ended, and
 * hold exactly shape × bits / 8 bytes; together they must fill the data buffer. Returns the file order.
 * Ties go by name: the reference walks them in hash order, so which of two bad tensors on one spot it
 * reports varies from run to run; here it is always the first by name, and both readers agree.
 */
function validate(rows: Entry[], dataStart: number, dataSize: number): Tensors {
  rows.sort((x, y) => (x.start != y.start ? (lt(x.start, y.start) ? -1 : 1) : x.end != y.end ? (lt(x.end, y.end) ? -1 : 1) : compareNames(x.name, y.name)));
  let cursor: number | bigint = 0;
  // Built as we go: on a refusal the header is dropped whole, so half-filled results never escape.
  const tensors = new Map<string, TensorEntry>();
  const order: string[] = [];
  for (const e of rows) {
    const name = e.name;
    if (e.start != cursor || lt(e.end, e.start)) {
      throw new SafetensorsError("InvalidOffset", `${where(name)} has data_offsets [${e.start}, ${e.end}] but should start at ${cursor}`);
    }
    cursor = e.end;
    const bits = bitCount(e.shape, DTYPES.get(e.dtype)!.bits);
    if (bits === null) {
      throw new SafetensorsError("ValidationOverflow", `${where(name)}: element count overflows 64 bits`);
    }
    if (typeof bits === "number" ? bits % 8 !== 0 : bits % 8n !== 0n) {
      throw new SafetensorsError("MisalignedSlice", `${where(name)}: ${e.dtype} × ${e.shape.length > 8 ? `${e.shape.length} dimensions` : `[${e.shape}]`} is not a whole number of bytes`);
    }
    const bytes = typeof bits === "number" ? bits / 8 : bits / 8n;
    const span = typeof e.end === "number" && typeof e.start === "number" ? e.end - e.start : BigInt(e.end) - BigInt(e.start);
    if (span != bytes) {
      throw new SafetensorsError("TensorInvalidInfo", `${where(name)} spans ${span} bytes but its shape and dtype need ${bytes}`);
    }
    // An offset past 2^53 cannot end inside a real file: the buffer check below refuses the header then.
    const first = Number(e.start);
    const shape = isNumbers(e.shape) ? e.shape : e.shape.map(Number);
    tensors.set(name, { dtype: e.dtype, shape, dataOffsets: [first, Number(e.end)], byteLength: Number(span), start: dataStart + first });
    order.push(name);
  }
  if (cursor != dataSize) {
    throw new SafetensorsError("MetadataIncompleteBuffer", `tensors cover ${cursor} data bytes but the file holds ${dataSize}`);
  }
  return { tensors, order };
}

function isNumbers(v: Array<number | bigint>): v is number[] {
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== "number") return false;
  return true;
}
