/**
 * The dtype table: every dtype safetensors 0.8 knows, in the reference's enum order (the writer's sort key),
 * with its width in bits, the typed array that views it, and how one element decodes to a float.
 */

export type DType =
  | "BOOL" | "F4" | "F6_E2M3" | "F6_E3M2" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0"
  | "F8_E4M3FNUZ" | "F8_E5M2FNUZ" | "I16" | "U16" | "F16" | "BF16" | "I32" | "U32" | "F32"
  | "C64" | "F64" | "I64" | "U64";

export type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

type ArrayType = {
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
};

export interface DTypeInfo {
  readonly name: DType;
  /** Width of one element in bits (4 and 6 for the packed sub-byte floats). */
  readonly bits: number;
  /** The typed array `Tensor.typed()` returns. Raw 16- and 8-bit floats come as their integer bits. */
  readonly array: ArrayType;
  /** Decodes one element (given as the typed array holds it) to a number; absent where a dtype is not scalar-decodable. */
  readonly decode?: (raw: number) => number;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 is the top half of a float32. */
function bf16(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

/**
 * A small-float decoder: sign bit, `e` exponent bits, `m` mantissa bits, the exponent bias, and how the
 * all-ones exponent and the negative zero are spent (IEEE inf/NaN, "fn" NaN only, or "fnuz" 0x80 = NaN).
 */
function minifloat(e: number, m: number, bias: number, special: "ieee" | "fn" | "fnuz" | "none"): (raw: number) => number {
  const expMask = (1 << e) - 1;
  const manMask = (1 << m) - 1;
  const signBit = 1 << (e + m);
  return (raw) => {
    if (special === "fnuz" && raw === signBit) return NaN;
    const sign = raw & signBit ? -1 : 1;
    const exp = (raw >> m) & expMask;
    const man = raw & manMask;
    if (exp === expMask) {
      if (special === "ieee") return man === 0 ? sign * Infinity : NaN;
      if (special === "fn" && man === manMask) return NaN;
    }
    if (exp === 0) return sign * man * 2 ** (1 - bias - m);
    return sign * (1 + man / (1 << m)) * 2 ** (exp - bias);
  };
}

const half = minifloat(5, 10, 15, "ieee");

const table: DTypeInfo[] = [
  { name: "BOOL", bits: 8, array: Uint8Array, decode: (x) => (x ? 1 : 0) },
  { name: "F4", bits: 4, array: Uint8Array, decode: minifloat(2, 1, 1, "none") },
  { name: "F6_E2M3", bits: 6, array: Uint8Array },
  { name: "F6_E3M2", bits: 6, array: Uint8Array },
  { name: "U8", bits: 8, array: Uint8Array },
  { name: "I8", bits: 8, array: Int8Array },
  { name: "F8_E5M2", bits: 8, array: Uint8Array, decode: minifloat(5, 2, 15, "ieee") },
  { name: "F8_E4M3", bits: 8, array: Uint8Array, decode: minifloat(4, 3, 7, "fn") },
  { name: "F8_E8M0", bits: 8, array: Uint8Array, decode: (x) => (x === 255 ? NaN : 2 ** (x - 127)) },
  { name: "F8_E4M3FNUZ", bits: 8, array: Uint8Array, decode: minifloat(4, 3, 8, "fnuz") },
  { name: "F8_E5M2FNUZ", bits: 8, array: Uint8Array, decode: minifloat(5, 2, 16, "fnuz") },
  { name: "I16", bits: 16, array: Int16Array },
  { name: "U16", bits: 16, array: Uint16Array },
  { name: "F16", bits: 16, array: Uint16Array, decode: half },
  { name: "BF16", bits: 16, array: Uint16Array, decode: bf16 },
  { name: "I32", bits: 32, array: Int32Array },
  { name: "U32", bits: 32, array: Uint32Array },
  { name: "F32", bits: 32, array: Float32Array },
  { name: "C64", bits: 64, array: Float32Array },
  { name: "F64", bits: 64, array: Float64Array },
  { name: "I64", bits: 64, array: BigInt64Array },
  { name: "U64", bits: 64, array: BigUint64Array },
];

/**
 * Dtypes by name. A `Map`, so names such as `__proto__` are just unknown dtypes.
 *
 * @example
 * ```ts
 * import { DTYPES } from "tensormap";
 * console.log(DTYPES.get("BF16")?.bits, DTYPES.has("__proto__")); // 16 false
 * ```
 */
export const DTYPES: ReadonlyMap<string, DTypeInfo> = new Map(table.map((d) => [d.name, d]));

/** Position in the reference's enum: the writer sorts by it, descending. */
export const DTYPE_RANK: ReadonlyMap<string, number> = new Map(table.map((d, i) => [d.name, i]));

/**
 * Looks a dtype up by name; `undefined` for anything the format does not define.
 *
 * @example
 * ```ts
 * import { dtypeInfo } from "tensormap";
 * console.log(dtypeInfo("BF16")?.bits, dtypeInfo("F4")?.bits, dtypeInfo("F128")); // 16 4 undefined
 * ```
 */
export function dtypeInfo(name: string): DTypeInfo | undefined {
  return DTYPES.get(name);
}
