import type { Split } from "../../src/device/tp-plan.ts";

/**
 * Puts ranks' parts of one tensor back together, element by element (independently of the planner's byte runs):
 * each part's element at a row-major index is placed where its split says. Throws where two ranks disagree on an
 * element; returns the assembled bytes and how many elements no rank held.
 *
 * @example
 * ```ts
 * const { bytes, missing } = assemble([4, 6], 2, ranks.map((r) => ({ split: r.split, bytes: r.bytes })));
 * ```
 */
export function assemble(shape: readonly number[], elemBytes: number, parts: Array<{ split: Split | null; bytes: Uint8Array }>): { bytes: Uint8Array; missing: number } {
  const total = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(total * elemBytes);
  const seen = new Uint8Array(total);
  for (const { split, bytes } of parts) {
    const partShape = shape.map((d, i) => (split && i === split.dim ? (split.end - split.start) * (split.parts ?? 1) : d));
    const count = partShape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== count * elemBytes) throw new Error(`part of ${bytes.byteLength} bytes for shape [${partShape}]`);
    for (let k = 0; k < count; k++) {
      // Unravel k in the part's shape, map the split dimension to the full one, ravel in the full shape.
      let rest = k;
      let full = 0;
      let stride = 1;
      for (let d = shape.length - 1; d >= 0; d--) {
        let i = rest % partShape[d]!;
        rest = Math.floor(rest / partShape[d]!);
        if (split && d === split.dim) {
          const width = split.end - split.start;
          const block = shape[d]! / (split.parts ?? 1);
          i = Math.floor(i / width) * block + split.start + (i % width);
        }
        full += i * stride;
        stride *= shape[d]!;
      }
      const src = bytes.subarray(k * elemBytes, (k + 1) * elemBytes);
      if (seen[full] && !out.subarray(full * elemBytes, (full + 1) * elemBytes).every((b, j) => b === src[j])) {
        throw new Error(`ranks disagree on element ${full}`);
      }
      out.set(src, full * elemBytes);
      seen[full] = 1;
    }
  }
  return { bytes: out, missing: seen.reduce((a, s) => a + (s ? 0 : 1), 0) };
}
