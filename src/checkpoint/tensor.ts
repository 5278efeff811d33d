import { SafetensorsError } from "../errors.ts";
import { DTYPES, type DType, type TypedArray } from "../format/dtypes.ts";

/**
 * One tensor: its name, dtype, shape and exactly its bytes (little-endian, row-major). Under the mmap
 * backend `bytes` is a view into the file's pages; under the read backend it is a copy.
 *
 * @example
 * ```ts
 * import { open } from "tensormap";
 * using file = await open("model.safetensors");
 * const t = file.tensor("wte.weight");
 * const weights = t.toFloat32(); // decodes bf16, f16 and the f8 variants
 * ```
 */
export class Tensor {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;

  constructor(name: string, dtype: DType, shape: readonly number[], bytes: Uint8Array) {
    this.name = name;
    this.dtype = dtype;
    this.shape = shape;
    this.bytes = bytes;
  }

  /**
   * Number of elements (1 for a scalar).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * console.log(file.tensor("wte.weight").numel); // 1024: 64 × 16
   * ```
   */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * The bytes as the matching typed array (`Float32Array`, `BigInt64Array`, …): zero-copy when the bytes
   * are aligned for it, a copy otherwise. F16, BF16 and the F8s come as their raw bits (`Uint16Array`,
   * `Uint8Array`), C64 as interleaved `[re, im]` floats, F4/F6 as packed bytes.
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const bias = file.tensor("h.0.attn.c_attn.bias").typed(); // F32: a Float32Array, zero-copy where aligned
   * const wte = file.tensor("wte.weight").typed(); // BF16: a Uint16Array of the raw bits
   * ```
   */
  typed(): TypedArray {
    const { array } = DTYPES.get(this.dtype)!;
    const size = array.BYTES_PER_ELEMENT;
    const b = this.bytes;
    const src = b.byteOffset % size === 0 ? b : b.slice();
    return new array(src.buffer, src.byteOffset, src.byteLength / size);
  }

  /**
   * Decodes every element to float32 (C64 gives interleaved pairs; integers and BOOL convert).
   *
   * @example
   * ```ts
   * import { open } from "tensormap";
   * using file = await open("model.safetensors");
   * const wte = file.tensor("wte.weight").toFloat32(); // BF16 → Float32Array(1024), a fresh copy
   * ```
   */
  toFloat32(): Float32Array {
    const info = DTYPES.get(this.dtype)!;
    if (info.bits === 6) throw new SafetensorsError("UnsupportedDtype", `${this.dtype} has no float decoding`);
    if (info.bits === 4) {
      // Two E2M1 values a byte, the first in the low nibble.
      const out = new Float32Array(this.bytes.byteLength * 2);
      this.bytes.forEach((b, i) => {
        out[2 * i] = info.decode!(b & 0xf);
        out[2 * i + 1] = info.decode!(b >> 4);
      });
      return out;
    }
    const raw = this.typed();
    if (raw instanceof Float32Array) return raw.buffer === this.bytes.buffer ? raw.slice() : raw;
    const out = new Float32Array(raw.length);
    const decode = info.decode;
    if (decode) for (let i = 0; i < raw.length; i++) out[i] = decode(raw[i] as number);
    else for (let i = 0; i < raw.length; i++) out[i] = Number(raw[i]);
    return out;
  }
}
