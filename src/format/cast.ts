/**
 * Casting floating-point tensor bytes (F64, F32, F16, BF16) to BF16, F16 or F32 the way torch's `.to()` does,
 * bit for bit: round to nearest, ties to even; overflow to ±inf; subnormals kept; f64 goes through f32 (rounded
 * twice, as torch rounds it). Every pair is one entry of {@link CASTS}; 16-bit sources are a 65,536-entry table.
 *
 * NaNs stay NaN with their sign where torch keeps it, but torch's NaN bits depend on the code path it takes
 * (its vector kernels and its scalar c10 code differ): these are the ones its vector kernels give on x86-64
 * (AVX2 and AVX-512), what `.to()` runs for model-sized tensors there. f32 → bf16 NaN is 0xFFFF (c10's scalar
 * `round_to_nearest_even` gives 0x7FC0); f32 → f16 and f64 → f32 keep the top payload bits and set the quiet bit
 * (F16C and cvtpd2ps); f16 → f32 quiets; bf16 → f32 is the exact shift; f64 → bf16 NaN is 0xFFFF too, f16 → bf16 NaN 0x7FC0.
 *
 * Host byte order is little-endian (safetensors' order) on every platform the runtimes run on; checked once.
 */
import { SafetensorsError } from "../errors.ts";
import type { DType } from "./dtypes.ts";

/** The dtypes a cast writes. */
export type CastTarget = "BF16" | "F16" | "F32";
export const CAST_TARGETS: readonly CastTarget[] = ["BF16", "F16", "F32"];

/** The floating-point dtypes that are cast; every other dtype (integers, bool, 8-bit and smaller floats) is kept. */
const FLOATS = new Map<DType, number>([["F64", 8], ["F32", 4], ["F16", 2], ["BF16", 2]]);
const WIDTH: Record<CastTarget, number> = { BF16: 2, F16: 2, F32: 4 };

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new SafetensorsError("InvalidArgument", "casting needs a little-endian host");

/** f32 bits → bf16 bits, rounding to nearest even; NaN → `nan`. Non-NaN sums stay below 2^32 (no wrap). */
function bf16FromF32(u: number, nan: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return nan;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

/** f32 bits → f16 bits, rounding to nearest even (IEEE, as F16C's vcvtps2ph): NaN keeps its top payload, quieted. */
function f16FromF32(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  // 65520 (halfway from 65504, the largest finite, whose mantissa is odd) and above round to inf.
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    // Normal in f16: rebias the exponent (127 → 15), then round away the low 13 mantissa bits.
    const m = a - 0x38000000;
    return sign | ((m + 0xfff + ((m >>> 13) & 1)) >>> 13);
  }
  // 2^-25, half the smallest subnormal, is a tie and goes to zero (even).
  if (a <= 0x33000000) return sign;
  // Subnormal in f16: count in units of 2^-24 and round the bits shifted out.
  const shift = 126 - (a >>> 23);
  const mant = (a & 0x7fffff) | 0x800000;
  const half = 1 << (shift - 1);
  const rest = mant & ((half << 1) - 1);
  const r = mant >>> shift;
  return sign | (rest > half || (rest === half && r & 1) ? r + 1 : r);
}

/** f16 bits → f32 bits, exact; a NaN is quieted (as vcvtph2ps). */
function f32FromF16(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return (sign | 0x7f800000 | (m === 0 ? 0 : 0x400000 | (m << 13))) >>> 0;
  if (e !== 0) return (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
  if (m === 0) return sign >>> 0;
  // Subnormal: m · 2^-24 with its top bit at p is 2^(p-24) · 1.xxx.
  const p = 31 - Math.clz32(m);
  return (sign | ((p + 103) << 23) | ((m << (23 - p)) & 0x7fffff)) >>> 0;
}

/** A 65,536-entry table of a 16-bit source's results, built on first use. */
function table16(make: (h: number) => number, wide: boolean): () => Uint16Array | Uint32Array {
  let built: Uint16Array | Uint32Array | undefined;
  return () => {
    if (built) return built;
    const t = wide ? new Uint32Array(65536) : new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = make(h);
    return (built = t);
  };
}

/** Casts `n` elements from an aligned copy of the source into the output's element array. */
type Kernel = (src: ArrayBuffer, n: number, dst: Uint16Array | Uint32Array, at: number) => void;

function fromTable(table: () => Uint16Array | Uint32Array): Kernel {
  return (src, n, dst, at) => {
    const t = table();
    const s = new Uint16Array(src, 0, n);
    for (let i = 0; i < n; i++) dst[at + i] = t[s[i]!]!;
  };
}

/** f64 → f32 bits: `Math.fround` rounds to nearest even; a NaN keeps its top 23 payload bits, quieted (cvtpd2ps). */
function f64ToF32(src: ArrayBuffer, n: number, out: Uint32Array): void {
  const d = new Float64Array(src, 0, n);
  const w = new Uint32Array(src, 0, 2 * n);
  const f = new Float32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const x = d[i]!;
    if (x === x) f[i] = x;
    else out[i] = ((w[2 * i + 1]! & 0x80000000) | 0x7fc00000 | ((w[2 * i + 1]! & 0xfffff) << 3) | (w[2 * i]! >>> 29)) >>> 0;
  }
}

/** f64 → f32 into a scratch array, then `next` on each f32's bits. */
function throughF32(next: (u: number) => number): Kernel {
  let scratch = new Uint32Array(0);
  return (src, n, dst, at) => {
    if (scratch.length < n) scratch = new Uint32Array(n);
    f64ToF32(src, n, scratch);
    for (let i = 0; i < n; i++) dst[at + i] = next(scratch[i]!);
  };
}

const f16ToF32 = table16(f32FromF16, true);
const f16ToBf16 = table16((h) => bf16FromF32(f32FromF16(h), 0x7fc0), false);
const bf16ToF16 = table16((h) => f16FromF32(h << 16), false);

/** One kernel per source → target pair; a pair not listed (same dtype) is a copy. */
const CASTS = new Map<string, Kernel>([
  ["F32>BF16", (src, n, dst, at) => {
    const s = new Uint32Array(src, 0, n);
    for (let i = 0; i < n; i++) dst[at + i] = bf16FromF32(s[i]!, 0xffff);
  }],
  ["F32>F16", (src, n, dst, at) => {
    const s = new Uint32Array(src, 0, n);
    for (let i = 0; i < n; i++) dst[at + i] = f16FromF32(s[i]!);
  }],
  ["F16>F32", fromTable(f16ToF32)],
  ["F16>BF16", fromTable(f16ToBf16)],
  ["BF16>F32", (src, n, dst, at) => {
    const s = new Uint16Array(src, 0, n);
    for (let i = 0; i < n; i++) dst[at + i] = s[i]! << 16 >>> 0;
  }],
  ["BF16>F16", fromTable(bf16ToF16)],
  ["F64>F32", (src, n, dst, at) => f64ToF32(src, n, (dst as Uint32Array).subarray(at, at + n))],
  ["F64>BF16", throughF32((u) => bf16FromF32(u, 0xffff))],
  ["F64>F16", throughF32(f16FromF32)],
]);

/**
 * The dtype a tensor of `dtype` has after casting to `target`: `target` for F64, F32, F16 and BF16, and
 * `dtype` itself for everything else (integers and bool are never cast).
 *
 * @example
 * ```ts
 * import { castDtype } from "tensormap";
 * castDtype("F32", "BF16"); // "BF16"
 * castDtype("I64", "BF16"); // "I64"
 * ```
 */
export function castDtype(dtype: DType, target: CastTarget): DType {
  return FLOATS.has(dtype) ? target : dtype;
}

/** Bytes copied into the aligned scratch buffer at a time (a multiple of every width). */
const PIECE = 1 << 20;

/**
 * Casts one tensor's bytes, given in pieces of any size and alignment (e.g. `file.chunks(name)`), from `dtype`
 * to {@link castDtype}`(dtype, target)`. Returns the new bytes (or a copy when nothing changes); the input is
 * read a piece at a time, so memory is the output plus at most 1 MiB.
 *
 * @example
 * ```ts
 * import { castBytes, open } from "tensormap";
 * using file = await open("model.safetensors");
 * const { dtype, byteLength } = file.info("wte.weight");
 * const bf16 = castBytes(file.chunks("wte.weight"), dtype, "BF16", byteLength);
 * ```
 */
export function castBytes(pieces: Iterable<Uint8Array>, dtype: DType, target: CastTarget, byteLength: number): Uint8Array {
  const to = castDtype(dtype, target);
  const from = FLOATS.get(dtype);
  const kernel = CASTS.get(`${dtype}>${to}`);
  if (from === undefined || !kernel) return concat(pieces, byteLength);
  if (byteLength % from !== 0) throw new SafetensorsError("TensorInvalidInfo", `${byteLength} bytes is not a whole number of ${dtype} elements`);
  const n = byteLength / from;
  const out = new Uint8Array(n * WIDTH[target]);
  const dst = WIDTH[target] === 4 ? new Uint32Array(out.buffer) : new Uint16Array(out.buffer);
  const scratch = new Uint8Array(Math.min(PIECE, Math.ceil(byteLength / 8) * 8));
  let held = 0;
  let done = 0;
  let read = 0;
  // The scratch holds whole elements when full (its size is a multiple of every width): pieces may split
  // elements anywhere, the scratch never does.
  const flush = () => {
    kernel(scratch.buffer, held / from, dst, done);
    done += held / from;
    held = 0;
  };
  for (const piece of pieces) {
    read += piece.byteLength;
    if (read > byteLength) throw new SafetensorsError("TensorInvalidInfo", `more than ${byteLength} bytes read for one ${dtype} tensor`);
    for (let at = 0; at < piece.byteLength; ) {
      const take = Math.min(scratch.byteLength - held, piece.byteLength - at);
      scratch.set(piece.subarray(at, at + take), held);
      held += take;
      at += take;
      if (held === scratch.byteLength) flush();
    }
  }
  if (read !== byteLength) throw new SafetensorsError("TensorInvalidInfo", `read ${read} bytes of a ${byteLength}-byte ${dtype} tensor`);
  flush();
  return out;
}

function concat(pieces: Iterable<Uint8Array>, byteLength: number): Uint8Array {
  const out = new Uint8Array(byteLength);
  let at = 0;
  for (const piece of pieces) {
    if (at + piece.byteLength > byteLength) throw new SafetensorsError("TensorInvalidInfo", `more than ${byteLength} bytes read for one tensor`);
    out.set(piece, at);
    at += piece.byteLength;
  }
  if (at !== byteLength) throw new SafetensorsError("TensorInvalidInfo", `read ${at} bytes of a ${byteLength}-byte tensor`);
  return out;
}
