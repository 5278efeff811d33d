import { SafetensorsError } from "../errors.ts";

/** Per dimension: `[start, end)` (negative counts from the end), one index (drops the dimension), or `null` for all of it. */
export type SliceSpec = ReadonlyArray<readonly [number, number] | number | null>;

export interface SlicePlan {
  shape: number[];
  /** Contiguous byte runs to copy, in output order: `[offset within the tensor, length]`. */
  runs: Array<[number, number]>;
  byteLength: number;
}

function bound(v: number, dim: number, what: string, name: string, allowEnd: boolean): number {
  if (!Number.isInteger(v)) throw new SafetensorsError("InvalidSlice", `${name}: slice ${what} ${v} is not an integer`);
  const x = v < 0 ? v + dim : v;
  if (x < 0 || x > dim || (!allowEnd && x === dim)) {
    throw new SafetensorsError("SliceOutOfRange", `${name}: ${what} ${v} is out of range for a dimension of ${dim}`);
  }
  return x;
}

/**
 * Works out which bytes a slice needs, as few contiguous runs as the layout allows.
 *
 * @example
 * ```ts
 * planSlice("w", [4, 6], 32, [[1, 3], null]); // rows 1..3, all columns: one run of 48 bytes at 24
 * ```
 */
export function planSlice(name: string, shape: readonly number[], bits: number, spec: SliceSpec): SlicePlan {
  if (spec.length > shape.length) {
    throw new SafetensorsError("TooManySlices", `${name}: ${spec.length} slices for ${shape.length} dimensions`);
  }
  const ranges = shape.map((dim, d): [number, number, boolean] => {
    const s = spec[d];
    if (s === null || s === undefined) return [0, dim, false];
    if (typeof s === "number") {
      const i = bound(s, dim, "index", name, false);
      return [i, i + 1, true];
    }
    const start = bound(s[0], dim, "start", name, true);
    const end = bound(s[1], dim, "end", name, true);
    if (end < start) throw new SafetensorsError("SliceOutOfRange", `${name}: slice end ${s[1]} is before start ${s[0]}`);
    return [start, end, false];
  });
  const outShape = ranges.filter((r) => !r[2]).map((r) => r[1] - r[0]);
  // Elements between consecutive indices of each dimension.
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
  // The innermost dimensions taken whole merge into one run with the first partial one above them.
  let inner = shape.length;
  while (inner > 0 && ranges[inner - 1]![0] === 0 && ranges[inner - 1]![1] === shape[inner - 1]) inner--;
  const runDim = inner - 1;
  const total = ranges.reduce((a, r) => a * (r[1] - r[0]), 1);
  const runElems = runDim < 0 ? total : (ranges[runDim]![1] - ranges[runDim]![0]) * strides[runDim]!;
  const runs: Array<[number, number]> = [];
  const toBytes = (elems: number, what: string) => {
    if ((elems * bits) % 8 !== 0) throw new SafetensorsError("MisalignedSlice", `${name}: the slice ${what} is not a whole byte`);
    return (elems * bits) / 8;
  };
  if (total > 0) {
    const runBytes = toBytes(runElems, "length");
    const idx = ranges.slice(0, Math.max(runDim, 0)).map((r) => r[0]);
    for (;;) {
      let elem = runDim < 0 ? 0 : ranges[runDim]![0] * strides[runDim]!;
      for (let d = 0; d < idx.length; d++) elem += idx[d]! * strides[d]!;
      runs.push([toBytes(elem, "start"), runBytes]);
      let d = idx.length - 1;
      while (d >= 0 && ++idx[d]! === ranges[d]![1]) idx[d] = ranges[d--]![0];
      if (d < 0) break;
    }
  }
  return { shape: outShape, runs, byteLength: runs.length * (runs[0]?.[1] ?? 0) };
}

/** One read of runs: `[offset, offset + length)`, and where its runs go in the output. */
export interface SliceRead {
  offset: number;
  length: number;
  /** `[offset within this read, offset within the output, length]`, one per run. */
  pieces: Array<[number, number, number]>;
}

/**
 * Byte runs (a slice's, or a rank's parts', in output order) as few reads as are worth it: a run starting at most
 * `maxGap` bytes past the previous one's end goes in the same read (the bytes between them are read and dropped),
 * others in reads of their own. The output is the runs one after another.
 *
 * @example
 * ```ts
 * sliceReads(planSlice("w", [4, 6], 32, [null, [0, 2]]), 16).length; // 1: rows 16 bytes apart, one read of 80
 * sliceReads(planSlice("w", [4, 6], 32, [null, [0, 2]]), 15).length; // 4: a read per row
 * ```
 */
export function sliceReads(plan: Pick<SlicePlan, "runs">, maxGap: number): SliceRead[] {
  const reads: SliceRead[] = [];
  let out = 0;
  for (const [offset, length] of plan.runs) {
    const last = reads.at(-1);
    const gap = last ? offset - (last.offset + last.length) : -1;
    if (last && gap >= 0 && gap <= maxGap) {
      last.pieces.push([offset - last.offset, out, length]);
      last.length = offset + length - last.offset;
    } else {
      reads.push({ offset, length, pieces: [[0, out, length]] });
    }
    out += length;
  }
  return reads;
}
