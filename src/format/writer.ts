/**
 * The writer mirrors the reader: the same table of dtypes, the reference's layout (tensors by dtype
 * descending then name, contiguous offsets, compact JSON padded with spaces to 8 bytes), and it refuses
 * what the reader would refuse or the reference should have refused.
 */
import { SafetensorsError } from "../errors.ts";
import { writeAtomic } from "../io/commit.ts";
import { DTYPE_RANK, DTYPES, type DType } from "./dtypes.ts";
import type { TensorInfo } from "./layout.ts";
import { compareNames } from "./names.ts";

/** What to write for one tensor: its dtype, shape, and exactly its bytes (little-endian, row-major). */
export interface TensorData {
  dtype: DType;
  shape: readonly number[];
  data: ArrayBufferView;
}

export type TensorMap = Record<string, TensorData> | Map<string, TensorData>;

/** A planned file: header bytes, then each tensor's bytes in order. */
export interface WritePlan {
  header: Uint8Array;
  chunks: Uint8Array[];
  /** Total file size: header plus data. */
  size: number;
}

const invalid = (message: string): never => {
  throw new SafetensorsError("InvalidTensor", message);
};

function checkText(what: string, s: string): void {
  if (s.includes("\0")) invalid(`${what} ${JSON.stringify(s)} contains NUL`);
  if (!s.isWellFormed()) invalid(`${what} ${JSON.stringify(s)} is not valid Unicode`);
}

/** What the header says of one tensor: enough to lay the file out before any data is read (`byteLength` must match). */
export type TensorShape = Pick<TensorInfo, "dtype" | "byteLength"> & { shape: readonly number[] };

/** A planned header: its bytes, the tensor names in file order, and the file size it describes. */
export interface HeaderPlan {
  header: Uint8Array;
  order: string[];
  size: number;
}

/**
 * Lays out a header from shapes alone, so a caller can stream each tensor's bytes after it, in `order`.
 *
 * @example
 * ```ts
 * const { header, order } = planHeader([["w", { dtype: "F32", shape: [2], byteLength: 8 }]], { format: "pt" });
 * order; // ["w"], the order to write tensors in after `header` (see streamed)
 * ```
 */
export function planHeader(tensors: Iterable<readonly [string, TensorShape]>, metadata?: Record<string, string> | null): HeaderPlan {
  const rows = [...tensors].map(([name, t]) => ({ name, t }));
  for (const { name, t } of rows) {
    checkText("tensor name", name);
    if (name === "__metadata__") invalid("a tensor cannot be named __metadata__");
    const info = DTYPES.get(t.dtype);
    if (!info) invalid(`tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      invalid(`tensor ${JSON.stringify(name)}: shape must be non-negative integers`);
    }
    const bits = t.shape.reduce((a, b) => a * BigInt(b), 1n) * BigInt(info!.bits);
    if (bits % 8n !== 0n) invalid(`tensor ${JSON.stringify(name)}: ${t.dtype} × ${t.shape.join("×")} is not a whole number of bytes`);
    if (BigInt(t.byteLength) !== bits / 8n) {
      invalid(`tensor ${JSON.stringify(name)}: data holds ${t.byteLength} bytes, shape and dtype need ${bits / 8n}`);
    }
  }
  rows.sort((a, b) => DTYPE_RANK.get(b.t.dtype)! - DTYPE_RANK.get(a.t.dtype)! || compareNames(a.name, b.name));
  const parts: string[] = [];
  if (metadata) {
    const keys = Object.keys(metadata).sort(compareNames);
    for (const k of keys) {
      checkText("metadata key", k);
      if (typeof metadata[k] !== "string") invalid(`metadata value for ${JSON.stringify(k)} is not a string`);
      checkText("metadata value", metadata[k]!);
    }
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  let offset = 0;
  for (const { name, t } of rows) {
    const end = offset + t.byteLength;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const n = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + n).fill(0x20, 8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return { header, order: rows.map((r) => r.name), size: header.byteLength + offset };
}

/**
 * A tensor's data as bytes (a view, no copy).
 *
 * @example
 * ```ts
 * tensorBytes("w", { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }).byteLength; // 8
 * ```
 */
export function tensorBytes(name: string, t: TensorData): Uint8Array {
  if (!ArrayBuffer.isView(t.data)) invalid(`tensor ${JSON.stringify(name)}: data is not an ArrayBufferView`);
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Lays out a file without copying any tensor data.
 *
 * @example
 * ```ts
 * import { planFile } from "tensormap";
 * const plan = planFile({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * console.log(plan.size, plan.header.byteLength); // 72 64: the header (padded to 8 bytes), then 8 data bytes
 * ```
 */
export function planFile(tensors: TensorMap, metadata?: Record<string, string> | null): WritePlan {
  const list = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const bytes = new Map(list.map(([name, t]) => [name, tensorBytes(name, t)]));
  const { header, order, size } = planHeader(list.map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, byteLength: bytes.get(name)!.byteLength }]), metadata);
  return { header, chunks: order.map((name) => bytes.get(name)!), size };
}

/**
 * The whole file in memory.
 *
 * @example
 * ```ts
 * import { parseHeader, serialize } from "tensormap";
 * const bytes = serialize({ w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } }, { format: "pt" });
 * console.log(parseHeader(bytes, bytes.byteLength).metadata); // { format: "pt" }
 * ```
 */
export function serialize(tensors: TensorMap, metadata?: Record<string, string> | null): Uint8Array {
  const plan = planFile(tensors, metadata);
  const out = new Uint8Array(plan.size);
  out.set(plan.header);
  let at = plan.header.byteLength;
  for (const c of plan.chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Writes a file whole or not at all: into a temporary file beside it, fsync, then rename over the target
 * (src/io/commit.ts). A reader that has the old file open or mapped keeps the old bytes. A file replaced
 * keeps its mode; a new one gets 0666 less the umask.
 *
 * @example
 * ```ts
 * import { open, save } from "tensormap";
 * await save("small.safetensors", { w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
 * using file = await open("small.safetensors");
 * console.log(file.tensor("w").toFloat32()); // Float32Array [1, 2]
 * ```
 */
export async function save(path: string, tensors: TensorMap, metadata?: Record<string, string> | null): Promise<void> {
  const plan = planFile(tensors, metadata);
  writeAtomic(path, [plan.header, ...plan.chunks]);
}

/** The header, then each tensor's bytes fetched as it is its turn. */
export function* streamed(header: Uint8Array, order: readonly string[], read: (name: string) => Uint8Array): Generator<Uint8Array> {
  yield header;
  for (const name of order) yield read(name);
}
