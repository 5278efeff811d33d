/**
 * The safetensors header: `u64 LE N` · `N bytes of UTF-8 JSON` · data. One pass that accepts and rejects
 * exactly what safetensors 0.8 does, with its error names as codes (DESIGN.md §1).
 */
import { SafetensorsError } from "../errors.ts";
import { DTYPES, type DType } from "./dtypes.ts";
import { JsonNumber, JsonObject, parseJson, type JsonValue } from "./json.ts";

/** The reference refuses headers above 100 MB. */
export const MAX_HEADER_SIZE = 100_000_000;

export interface TensorInfo {
  dtype: DType;
  /** Dimensions; `[]` is a scalar. */
  shape: number[];
  /** Start and end of the bytes, relative to the data buffer that follows the header. */
  dataOffsets: [number, number];
  byteLength: number;
}

export interface Header {
  /** N: the JSON's length in bytes, padding included. */
  headerSize: number;
  /** Where the data buffer starts in the file: 8 + N. */
  dataStart: number;
  /** `__metadata__` as a null-prototype record, or null when absent. */
  metadata: Record<string, string> | null;
  tensors: Map<string, TensorInfo>;
  /** Tensor names in file order (by data offsets). */
  order: string[];
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const bad = (message: string): never => {
  throw new SafetensorsError("InvalidHeaderDeserialization", message);
};

/**
 * Reads the 8-byte length prefix and checks it against the file size.
 * Returns N, the header's length in bytes.
 */
export function headerLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new SafetensorsError("HeaderTooSmall", `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError("HeaderTooLarge", `header length ${n} is over the ${MAX_HEADER_SIZE}-byte limit`);
  }
  if (8n + n > BigInt(fileSize)) {
    throw new SafetensorsError("InvalidHeaderLength", `header length ${n} runs past the end of the ${fileSize}-byte file`);
  }
  return Number(n);
}

/**
 * Parses and validates a whole header. `bytes` holds at least the first `8 + N` bytes of the file.
 *
 * @example
 * ```ts
 * const file = await Deno.readFile("model.safetensors");
 * const header = parseHeader(file, file.byteLength);
 * console.log(header.order);
 * ```
 */
export function parseHeader(bytes: Uint8Array, fileSize: number): Header {
  const n = headerLength(bytes, fileSize);
  if (bytes.byteLength < 8 + n) {
    throw new SafetensorsError("InvalidHeaderLength", `need ${8 + n} header bytes, got ${bytes.byteLength}`);
  }
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError("InvalidHeader", "header is not valid UTF-8");
  }
  const { metadata, entries } = readEntries(parseJson(text));
  const order = validate(entries, fileSize - 8 - n);
  const tensors = new Map<string, TensorInfo>();
  for (const name of order) tensors.set(name, entries.get(name)!.info);
  return { headerSize: n, dataStart: 8 + n, metadata, tensors, order };
}

interface Entry {
  info: TensorInfo;
  start: number | bigint;
  end: number | bigint;
  shape: Array<number | bigint>;
}

function readEntries(root: JsonValue): { metadata: Record<string, string> | null; entries: Map<string, Entry> } {
  if (!(root instanceof JsonObject)) return bad("header is not a JSON object");
  let metadata: Record<string, string> | null = null;
  let sawMetadata = false;
  const entries = new Map<string, Entry>();
  for (const [key, value] of root.entries) {
    if (key === "__metadata__") {
      if (sawMetadata) bad("duplicate field `__metadata__`");
      sawMetadata = true;
      metadata = readMetadata(value);
    } else {
      // Duplicate tensor names: each must parse, the last one wins (a map insert in the reference).
      entries.set(key, readTensor(key, value));
    }
  }
  return { metadata, entries };
}

function readMetadata(value: JsonValue): Record<string, string> | null {
  if (value === null) return null;
  if (!(value instanceof JsonObject)) return bad("`__metadata__` is not a map of strings");
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of value.entries) {
    if (typeof v !== "string") bad(`\`__metadata__\` value for ${JSON.stringify(k)} is not a string`);
    out[k] = v as string;
  }
  return out;
}

const FIELDS = ["dtype", "shape", "data_offsets"] as const;

/** A tensor entry: a map with the three fields (others ignored), or serde's sequence form `[dtype, shape, offsets]`. */
function readTensor(name: string, value: JsonValue): Entry {
  const where = () => `tensor ${JSON.stringify(name)}`;
  let dtype: JsonValue | undefined;
  let shape: JsonValue | undefined;
  let offsets: JsonValue | undefined;
  if (value instanceof JsonObject) {
    for (const [k, v] of value.entries) {
      if (k === "dtype" ? dtype !== undefined : k === "shape" ? shape !== undefined : k === "data_offsets" ? offsets !== undefined : false) {
        bad(`${where()}: duplicate field \`${k}\``);
      }
      if (k === "dtype") dtype = v;
      else if (k === "shape") shape = v;
      else if (k === "data_offsets") offsets = v;
    }
    // serde reports the first missing field in declaration order.
    const missing = dtype === undefined ? 0 : shape === undefined ? 1 : offsets === undefined ? 2 : -1;
    if (missing >= 0) bad(`${where()}: missing field \`${FIELDS[missing as 0 | 1 | 2]}\``);
  } else if (Array.isArray(value)) {
    if (value.length !== 3) bad(`${where()}: expected 3 fields, got an array of ${value.length}`);
    [dtype, shape, offsets] = value;
  } else {
    bad(`${where()}: expected a map`);
  }
  const info = { dtype: readDtype(where, dtype!), shape: [] as number[], dataOffsets: [0, 0] as [number, number], byteLength: 0 };
  const dims = readU64Array(where, "shape", shape!);
  const span = readU64Array(where, "data_offsets", offsets!);
  if (span.length !== 2) bad(`${where()}: \`data_offsets\` must hold 2 numbers, not ${span.length}`);
  info.shape = dims.map(Number);
  return { info, start: span[0]!, end: span[1]!, shape: dims };
}

/** A dtype is a variant name, or serde's map form of a unit variant: `{"F32": null}`. */
function readDtype(where: () => string, v: JsonValue): DType {
  let name: JsonValue = v;
  if (v instanceof JsonObject && v.entries.length === 1 && v.entries[0]![1] === null) name = v.entries[0]![0];
  if (typeof name !== "string") return bad(`${where()}: \`dtype\` is not a string`);
  const info = DTYPES.get(name);
  if (!info) return bad(`${where()}: unknown dtype ${JSON.stringify(name)}`);
  return info.name;
}

/** Unsigned 64-bit integers: plain numbers when below 2^53, bigints above. */
function readU64Array(where: () => string, field: string, v: JsonValue): Array<number | bigint> {
  if (!Array.isArray(v)) return bad(`${where()}: \`${field}\` is not an array`);
  const out: Array<number | bigint> = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (typeof x === "number") {
      out[i] = x;
      continue;
    }
    const u = x instanceof JsonNumber ? x.asU64() : null;
    if (u === null) bad(`${where()}: \`${field}\` holds ${x instanceof JsonNumber ? x.text : JSON.stringify(x)}, not an unsigned 64-bit integer`);
    out[i] = u! <= Number.MAX_SAFE_INTEGER ? Number(u) : u!;
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
 */
function validate(entries: Map<string, Entry>, dataSize: number): string[] {
  const rows = [...entries].sort(([, x], [, y]) =>
    x.start != y.start ? (lt(x.start, y.start) ? -1 : 1) : x.end != y.end ? (lt(x.end, y.end) ? -1 : 1) : 0,
  );
  let cursor: number | bigint = 0;
  for (const [name, e] of rows) {
    if (e.start != cursor || lt(e.end, e.start)) {
      throw new SafetensorsError("InvalidOffset", `tensor ${JSON.stringify(name)} has data_offsets [${e.start}, ${e.end}] but should start at ${cursor}`);
    }
    cursor = e.end;
    const bits = bitCount(e.shape, DTYPES.get(e.info.dtype)!.bits);
    if (bits === null) {
      throw new SafetensorsError("ValidationOverflow", `tensor ${JSON.stringify(name)}: element count overflows 64 bits`);
    }
    if (typeof bits === "number" ? bits % 8 !== 0 : bits % 8n !== 0n) {
      throw new SafetensorsError("MisalignedSlice", `tensor ${JSON.stringify(name)}: ${e.info.dtype} × [${e.shape}] is not a whole number of bytes`);
    }
    const bytes = typeof bits === "number" ? bits / 8 : bits / 8n;
    const span = typeof e.end === "number" && typeof e.start === "number" ? e.end - e.start : BigInt(e.end) - BigInt(e.start);
    if (span != bytes) {
      throw new SafetensorsError("TensorInvalidInfo", `tensor ${JSON.stringify(name)} spans ${span} bytes but its shape and dtype need ${bytes}`);
    }
  }
  if (cursor != dataSize) {
    throw new SafetensorsError("MetadataIncompleteBuffer", `tensors cover ${cursor} data bytes but the file holds ${dataSize}`);
  }
  for (const [, e] of rows) {
    e.info.dataOffsets = [Number(e.start), Number(e.end)];
    e.info.byteLength = Number(e.end) - Number(e.start);
  }
  return rows.map(([name]) => name);
}
