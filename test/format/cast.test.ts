import { expect, test } from "vitest";
import { castBytes, castDtype } from "../../src/format/cast.ts";
import type { DType } from "../../src/format/dtypes.ts";

/*
 * The expected values come from the rules, worked out here independently of src/format/cast.ts: a 16-bit format's
 * values decoded arithmetically, the nearest one found by binary search with ties to the even code, and overflow
 * as IEEE says (round as if the exponent were unbounded: past max + half an ulp is inf). NaN bits are the ones
 * torch 2.13's `.to()` gives on x86-64 (checked by hand against torch on every 16-bit pattern and ~10M others).
 */

interface Format16 {
  mantissa: number;
  bias: number;
  /** The inf code (exponent all ones, mantissa 0). */
  inf: number;
}
const F16: Format16 = { mantissa: 10, bias: 15, inf: 0x7c00 };
const BF16: Format16 = { mantissa: 7, bias: 127, inf: 0x7f80 };

/** A positive code's value by arithmetic; the inf code gives 2^(emax+1), the next value were there no limit. */
function value16(f: Format16, code: number): number {
  const e = code >> f.mantissa;
  const m = code & ((1 << f.mantissa) - 1);
  return e === 0 ? m * 2 ** (1 - f.bias - f.mantissa) : (1 + m / 2 ** f.mantissa) * 2 ** (e - f.bias);
}

/** Decodes any code of the format (sign, inf and NaN included). */
function decode16(f: Format16, code: number): number {
  const a = code & 0x7fff;
  if (a > f.inf) return NaN;
  const v = a === f.inf ? Infinity : value16(f, a);
  return code & 0x8000 ? -v : v;
}

/** The code nearest to `x` (not NaN), ties to the even code. */
function nearest16(f: Format16, x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const ax = Math.abs(x);
  if (ax >= value16(f, f.inf)) return sign | f.inf;
  // The largest code whose value is at most ax.
  let lo = 0;
  let hi = f.inf;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (value16(f, mid) <= ax) lo = mid;
    else hi = mid;
  }
  if (value16(f, lo) === ax) return sign | lo;
  // The midpoint of two neighbours has one bit more than the format: exact in a double.
  const mid = (value16(f, lo) + value16(f, hi)) / 2;
  return sign | (ax < mid ? lo : ax > mid ? hi : lo % 2 === 0 ? lo : hi);
}

const f32Bits = (x: number) => {
  const v = new DataView(new ArrayBuffer(4));
  v.setFloat32(0, x, true);
  return v.getUint32(0, true);
};
const f32Value = (bits: number) => {
  const v = new DataView(new ArrayBuffer(4));
  v.setUint32(0, bits, true);
  return v.getFloat32(0, true);
};
const f64FromBits = (hi: number, lo: number) => {
  const v = new DataView(new ArrayBuffer(8));
  v.setUint32(0, lo, true);
  v.setUint32(4, hi, true);
  return v.getFloat64(0, true);
};

/** Little-endian bytes of unsigned values of `width` bytes. */
function bytesOf(values: readonly number[], width: 2 | 4): Uint8Array {
  const v = new DataView(new ArrayBuffer(values.length * width));
  values.forEach((x, i) => (width === 2 ? v.setUint16(2 * i, x, true) : v.setUint32(4 * i, x, true)));
  return new Uint8Array(v.buffer);
}
function f64Bytes(pairs: readonly (readonly [number, number])[]): Uint8Array {
  const v = new DataView(new ArrayBuffer(pairs.length * 8));
  pairs.forEach(([hi, lo], i) => {
    v.setUint32(8 * i, lo, true);
    v.setUint32(8 * i + 4, hi, true);
  });
  return new Uint8Array(v.buffer);
}
function valuesOf(bytes: Uint8Array, width: 2 | 4): number[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.byteLength / width }, (_, i) => (width === 2 ? v.getUint16(2 * i, true) : v.getUint32(4 * i, true)));
}

const cast = (bytes: Uint8Array, from: DType, to: "BF16" | "F16" | "F32") => castBytes([bytes], from, to, bytes.byteLength);
const hex = (xs: number[]) => xs.map((x) => `0x${x.toString(16)}`);

/** A seeded xorshift32: the same "random" patterns every run. */
function patterns(n: number, seed = 0x9e3779b9): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  });
}

const all16 = Array.from({ length: 65536 }, (_, i) => i);

test("f32 → bf16 and f16: ties to even, either side of halfway, max finite, overflow, subnormals, ±0, inf", () => {
  const cases = [
    0x3f800000, // 1
    0x3f808000, // 1 + 2^-8: halfway to bf16 1 + 2^-7, even is 1
    0x3f818000, // 1 + 3·2^-8: halfway, even is 1 + 2^-6
    0x3f807fff, // just below halfway
    0x3f808001, // just above halfway
    0x3f801000, // 1 + 2^-11: halfway for f16, even is 1
    0x3f803000, // 1 + 3·2^-11: halfway for f16, up
    0x3f800fff,
    0x3f801001,
    0x7f7f0000, // bf16 max finite
    0x7f7f7fff, // below bf16's max + half ulp: max
    0x7f7f8000, // bf16 max + half ulp: inf (the max's mantissa is odd)
    0x7f7fffff, // f32 max: inf in both
    0x477fe000, // 65504, f16 max finite
    0x477fefff, // just under 65520: 65504
    0x477ff000, // 65520: inf in f16
    0x47800000, // 65536
    0x38800000, // 2^-14, f16's smallest normal
    0x387fc000, // 2^-14 - 2^-24, f16's largest subnormal
    0x33800000, // 2^-24, f16's smallest subnormal
    0x33000000, // 2^-25: a tie, to 0
    0x33000001, // just above: the smallest subnormal
    0x33c00000, // 1.5 · 2^-24: a tie, to 2 · 2^-24
    0x00000001, // f32's smallest subnormal: far below half of either's smallest, so 0
    0x00008000, // a bf16 tie among subnormals
    0x00018000,
    0x007fffff, // f32's largest subnormal
    0x80000000, // -0
    0x00000000,
    0x7f800000, // inf
    0xff800000, // -inf
    0xbf808001, // negative, just above halfway
    0xc77ff000, // -65520: -inf in f16
  ];
  const randoms = patterns(50_000).filter((u) => (u & 0x7fffffff) <= 0x7f800000);
  const all = [...cases, ...randoms];
  const bf16 = valuesOf(cast(bytesOf(all, 4), "F32", "BF16"), 2);
  const f16 = valuesOf(cast(bytesOf(all, 4), "F32", "F16"), 2);
  all.forEach((bits, i) => {
    const x = f32Value(bits);
    expect(bf16[i], `0x${bits.toString(16)}`).toBe(nearest16(BF16, x));
    expect(f16[i], `0x${bits.toString(16)}`).toBe(nearest16(F16, x));
  });
  // A few worked out by hand, so that the reference above is checked too.
  const some = [0x3f808000, 0x3f818000, 0x3f808001, 0x7f7f8000, 0x477ff000, 0x33000000, 0x33000001, 0x80000000];
  expect(hex(valuesOf(cast(bytesOf(some, 4), "F32", "BF16"), 2))).toEqual(hex([0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x4780, 0x3300, 0x3300, 0x8000]));
  expect(hex(valuesOf(cast(bytesOf(some, 4), "F32", "F16"), 2))).toEqual(hex([0x3c04, 0x3c0c, 0x3c04, 0x7c00, 0x7c00, 0x0000, 0x0001, 0x8000]));
});

test("f32 NaNs: bf16 0xFFFF whatever the sign or payload; f16 keeps sign and top payload bits, quieted", () => {
  const nans = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0x7fffffff, 0xffffffff, 0x7fc12345];
  expect(hex(valuesOf(cast(bytesOf(nans, 4), "F32", "BF16"), 2))).toEqual(hex(nans.map(() => 0xffff)));
  // sign | 0x7c00 | quiet bit 0x200 | payload bits 22..13.
  const f16 = nans.map((u) => ((u >>> 16) & 0x8000) | 0x7c00 | 0x200 | ((u >>> 13) & 0x3ff));
  expect(hex(valuesOf(cast(bytesOf(nans, 4), "F32", "F16"), 2))).toEqual(hex(f16));
  expect(hex(f16.slice(0, 5))).toEqual(hex([0x7e00, 0xfe00, 0x7e00, 0xfe00, 0x7f00]));
});

test("f16 and bf16 → f32 are exact for every pattern; NaNs: f16's quieted, bf16's as they are", () => {
  for (const [from, f] of [["F16", F16], ["BF16", BF16]] as const) {
    const got = valuesOf(cast(bytesOf(all16, 2), from, "F32"), 4);
    for (const code of all16) {
      const want = decode16(f, code);
      if (Number.isNaN(want)) {
        // f16: sign | 0x7f800000 | quiet bit | payload << 13. bf16: the top half of an f32, as stored.
        const nan = from === "F16" ? ((((code & 0x8000) << 16) | 0x7fc00000 | ((code & 0x3ff) << 13)) >>> 0) : (code << 16) >>> 0;
        expect(got[code], `${from} 0x${code.toString(16)}`).toBe(nan);
      } else {
        expect(Object.is(f32Value(got[code]!), want), `${from} 0x${code.toString(16)}`).toBe(true);
      }
    }
  }
});

test("f16 ↔ bf16 round every pattern to nearest even; NaNs: bf16 0x7FC0, f16 sign | 0x7E00 | payload", () => {
  const toBf16 = valuesOf(cast(bytesOf(all16, 2), "F16", "BF16"), 2);
  const toF16 = valuesOf(cast(bytesOf(all16, 2), "BF16", "F16"), 2);
  for (const code of all16) {
    const h = decode16(F16, code);
    expect(toBf16[code], `f16 0x${code.toString(16)}`).toBe(Number.isNaN(h) ? 0x7fc0 : nearest16(BF16, h));
    const b = decode16(BF16, code);
    expect(toF16[code], `bf16 0x${code.toString(16)}`).toBe(Number.isNaN(b) ? (code & 0x8000) | 0x7e00 | ((code & 0x7f) << 3) : nearest16(F16, b));
  }
});

test("f64 goes through f32, rounded twice as torch rounds it; f64 NaNs keep their top payload in f32", () => {
  // [hi, lo] words. 1 + 2^-8 + 2^-40 is above bf16's halfway, but rounds to it as an f32, then to even (1).
  const doubles: [number, number][] = [
    [0x3ff01000, 0x00010000], // 1 + 2^-8 + 2^-40
    [0x3ff00200, 0x00010000], // 1 + 2^-11 + 2^-40: the same for f16
    [0x3ff00000, 0x10000000], // 1 + 2^-24: an f32 tie, to 1
    [0x3ff00000, 0x10000001], // just above: 1 + 2^-23
    [0x47efffff, 0xf0000000], // f32 max + half ulp: inf
    [0x47efffff, 0xefffffff], // just below: f32 max
    [0x36a00000, 0x00000000], // 2^-149, f32's smallest subnormal
    [0x36900000, 0x00000000], // 2^-150: a tie, to 0
    [0x80000000, 0x00000000], // -0
    [0x7ff00000, 0x00000000], // inf
  ];
  const f32 = valuesOf(cast(f64Bytes(doubles), "F64", "F32"), 4);
  expect(hex(f32)).toEqual(hex([0x3f808000, 0x3f801000, 0x3f800000, 0x3f800001, 0x7f800000, 0x7f7fffff, 0x00000001, 0x00000000, 0x80000000, 0x7f800000]));
  expect(hex(valuesOf(cast(f64Bytes(doubles.slice(0, 2)), "F64", "BF16"), 2))).toEqual(hex([0x3f80, 0x3f80]));
  expect(hex(valuesOf(cast(f64Bytes(doubles.slice(0, 2)), "F64", "F16"), 2))).toEqual(hex([0x3c04, 0x3c00]));
  // Random doubles across f32's range: each is f32-nearest (DataView rounds to even), then 16-bit-nearest.
  const words = patterns(40_000, 7);
  const pairs: [number, number][] = [];
  for (let i = 0; i < words.length; i += 2) pairs.push([(words[i]! & 0x800fffff) | ((0x360 + (words[i]! >>> 20) % 0x120) << 20), words[i + 1]!]);
  const bytes = f64Bytes(pairs);
  const toF32 = valuesOf(cast(bytes, "F64", "F32"), 4);
  const toBf16 = valuesOf(cast(bytes, "F64", "BF16"), 2);
  const toF16 = valuesOf(cast(bytes, "F64", "F16"), 2);
  pairs.forEach(([hi, lo], i) => {
    const rounded = f32Bits(f64FromBits(hi, lo));
    expect(toF32[i]).toBe(rounded);
    expect(toBf16[i]).toBe(nearest16(BF16, f32Value(rounded)));
    expect(toF16[i]).toBe(nearest16(F16, f32Value(rounded)));
  });
  // NaN: f32 sign | 0x7fc00000 | the top 23 payload bits; bf16 0xFFFF; f16 from that f32.
  const nans: [number, number][] = [[0x7ff00000, 0x00000001], [0xfff81234, 0x56789abc]];
  expect(hex(valuesOf(cast(f64Bytes(nans), "F64", "F32"), 4))).toEqual(hex([0x7fc00000, 0xffc091a2]));
  expect(hex(valuesOf(cast(f64Bytes(nans), "F64", "BF16"), 2))).toEqual(hex([0xffff, 0xffff]));
  expect(hex(valuesOf(cast(f64Bytes(nans), "F64", "F16"), 2))).toEqual(hex([0x7e00, 0xfe04]));
});

test("pieces of any size and alignment cast as one; integers and bool are kept; same dtype is a copy", () => {
  const words = patterns(10_001, 3);
  const whole = bytesOf(words, 4);
  const one = cast(whole, "F32", "BF16");
  // Odd piece sizes, unaligned: elements split across pieces.
  const shifted = new Uint8Array(whole.byteLength + 1);
  shifted.set(whole, 1);
  const src = shifted.subarray(1);
  const pieces = (size: number) => Array.from({ length: Math.ceil(src.byteLength / size) }, (_, i) => src.subarray(i * size, (i + 1) * size));
  for (const size of [1, 3, 4097, 1 << 20]) expect(castBytes(pieces(size), "F32", "BF16", src.byteLength)).toEqual(one);
  expect(castDtype("F64", "F16")).toBe("F16");
  for (const dtype of ["I64", "I32", "U8", "BOOL", "F8_E4M3"] as const) {
    expect(castDtype(dtype, "BF16")).toBe(dtype);
    expect(castBytes([whole], dtype, "BF16", whole.byteLength)).toEqual(whole);
  }
  const copy = castBytes([whole], "F32", "F32", whole.byteLength);
  expect(copy).toEqual(whole);
  expect(copy.buffer).not.toBe(whole.buffer);
  expect(() => castBytes([whole.subarray(0, 6)], "F32", "BF16", 6)).toThrow(expect.objectContaining({ code: "TensorInvalidInfo" }));
  expect(() => castBytes([whole.subarray(0, 8)], "F32", "BF16", 12)).toThrow(expect.objectContaining({ code: "TensorInvalidInfo" }));
  expect(() => castBytes([whole.subarray(0, 16)], "F32", "BF16", 8)).toThrow(expect.objectContaining({ code: "TensorInvalidInfo" }));
  expect(() => castBytes([whole.subarray(0, 4)], "F32", "BF16", 0)).toThrow(expect.objectContaining({ code: "TensorInvalidInfo" }));
  expect(castBytes([], "F32", "BF16", 0)).toEqual(new Uint8Array(0));
});
