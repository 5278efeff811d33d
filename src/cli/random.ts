/**
 * Sample weights for the demo and the benchmarks: xorshift32 words shaped by `(x & keep) | set` (fix the
 * exponent, keep sign and mantissa random, and every value is a finite float of a chosen magnitude).
 * Reproducible from a seed and fast enough to fill gigabytes.
 *
 * @example
 * ```ts
 * // f32 values in ±[0.5, 1): sign and mantissa random, exponent 126.
 * const words = fillRandom(new Uint32Array(1024), 42, 0x807fffff, 0x3f000000);
 * ```
 */
export function fillRandom(words: Uint32Array, seed: number, keep = 0xffffffff, set = 0): Uint32Array {
  let x = seed | 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = (x & keep) | set;
  }
  return words;
}
