/**
 * The header has two readers: a fast path over `JSON.parse` for headers as writers write them, and the
 * strict reader that decides everything else. They must give the same answer (entries, their order, the
 * metadata, or the error code) on every conformance vector, on every fuzz case (fuzz.test.ts) and on the
 * generated headers here, which the fast path must also serve. Tensors that share offsets (zero-size
 * tensors at one spot) come in name order whatever the order of the keys in the text.
 */
import { describe, expect, test } from "vitest";
import { DTYPES } from "../../src/format/dtypes.ts";
import { parseHeader } from "../../src/format/header.ts";
import { compareNames } from "../../src/format/names.ts";
import { concat, u64le } from "../support/bytes.ts";
import { buildFile, VECTORS } from "./conformance.vectors.ts";
import { disagreement, outcome, prng, readerOutcomes, type Rng } from "./header-readers.ts";

const enc = new TextEncoder();
const DTYPE_LIST = [...DTYPES.values()];

/** A tensor as the generator lays it out. */
interface Gen {
  name: string;
  dtype: string;
  shape: number[];
  offsets: [number, number];
}

/** Names that trip JSON.parse-based readers: integer-like keys (enumerated first), prototype names, non-BMP text. */
const NAMES = ["0", "1", "7", "10", "2", "__proto__", "constructor", "toString", "é", "\u{1F600}", "\uFFFF", "a\u{10000}", "a", "b", "layer.0.w", "z"];
/** Names only the strict reader takes (the fast path declines text with escapes). */
const ESCAPED = ['q"uote', "back\\slash", "tab\t", "\u0001"];

/** A shape of `dtype` holding a whole number of bytes; zero-size when `empty`. */
function shapeFor(r: Rng, bits: number, empty: boolean): number[] {
  for (;;) {
    const shape = Array.from({ length: r.int(4) }, () => 1 + r.int(5));
    if (empty) shape.splice(r.int(shape.length + 1), 0, 0);
    if ((shape.reduce((a, b) => a * b, 1) * bits) % 8 === 0) return shape;
  }
}

/** Tensors laid out contiguously in a random data order, with many zero-size ones (ties on one spot). */
function tensors(r: Rng, escapes: boolean): Gen[] {
  const pool = escapes ? [...NAMES, ...ESCAPED] : NAMES;
  const names = [...new Set(Array.from({ length: r.int(10) }, () => (r.next() < 0.6 ? r.pick(pool) : `t${r.int(50)}`)))];
  let at = 0;
  return names.map((name) => {
    const info = r.pick(DTYPE_LIST);
    const shape = shapeFor(r, info.bits, r.next() < 0.4);
    const bytes = (shape.reduce((a, b) => a * b, 1) * info.bits) / 8;
    const g: Gen = { name, dtype: info.name, shape, offsets: [at, at + bytes] };
    at += bytes;
    return g;
  });
}

function shuffled<T>(r: Rng, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

interface Layout {
  /** Whitespace between tokens (JSON allows space, tab, CR, LF). */
  ws: string;
  metadata: Array<[string, string]> | "null" | undefined;
  /** Forms only the strict reader takes: an entry as an array, a dtype as a map, an extra field. */
  oddForms: boolean;
}

/** The file: header text in `keyOrder`, padded with spaces to 8 bytes, then the data. */
function file(gens: Gen[], keyOrder: Gen[], layout: Layout, r: Rng): Uint8Array {
  const w = layout.ws;
  const str = (s: string) => JSON.stringify(s);
  const entry = (g: Gen) => {
    const shape = `[${w}${g.shape.join(`,${w}`)}${w}]`;
    const offsets = `[${w}${g.offsets.join(`,${w}`)}${w}]`;
    if (layout.oddForms && r.next() < 0.3) return `[${w}${str(g.dtype)},${w}${shape},${w}${offsets}${w}]`;
    const dtype = layout.oddForms && r.next() < 0.3 ? `{${str(g.dtype)}:null}` : str(g.dtype);
    const extra = layout.oddForms && r.next() < 0.3 ? `,${w}"note":${w}[1,{"x":null}]` : "";
    return `{${w}"dtype":${w}${dtype},${w}"shape":${w}${shape},${w}"data_offsets":${w}${offsets}${extra}${w}}`;
  };
  const parts = keyOrder.map((g) => `${str(g.name)}:${w}${entry(g)}`);
  const md = layout.metadata;
  if (md !== undefined) {
    const value = md === "null" ? "null" : `{${md.map(([k, v]) => `${str(k)}:${w}${str(v)}`).join(`,${w}`)}}`;
    parts.splice(r.int(parts.length + 1), 0, `"__metadata__":${w}${value}`);
  }
  const text = enc.encode(`${w}{${w}${parts.join(`,${w}`)}${w}}${w}`);
  const header = concat(text, enc.encode(" ".repeat((8 - (text.byteLength % 8)) % 8)));
  const size = gens.length ? gens[gens.length - 1]!.offsets[1] : 0;
  return concat(u64le(BigInt(header.byteLength)), header, Uint8Array.from({ length: size }, (_, i) => i & 0xff));
}

const METADATA_KEYS = ["format", "1", "0", "__proto__", "é", "source"];

function layoutFor(r: Rng, plain: boolean): Layout {
  const keys = [...new Set(Array.from({ length: r.int(4) }, () => r.pick(METADATA_KEYS)))];
  const metadata = r.next() < 0.3 ? undefined : !plain && r.next() < 0.3 ? ("null" as const) : keys.map((k): [string, string] => [k, `v${r.int(9)}`]);
  return { ws: r.pick(["", "", " ", "\n", " \t\r\n"]), metadata, oddForms: !plain && r.next() < 0.5 };
}

const CASES = 3_000;

describe("the fast path and the strict reader agree", () => {
  test(`on all ${VECTORS.length} conformance vectors`, () => {
    const wrong = VECTORS.map((v) => ({ name: v.name, ...disagreement(buildFile(v)) })).filter((d) => d.mismatch);
    expect(wrong).toEqual([]);
    // Both readers ran: the fast path served the plain valid vectors and declined the rest.
    expect(VECTORS.filter((v) => disagreement(buildFile(v)).served).length).toBeGreaterThan(10);
  });

  test(`on ${CASES} generated valid headers as writers write them, all served by the fast path`, () => {
    const r = prng(0x0ff5e7);
    for (let i = 0; i < CASES; i++) {
      const gens = tensors(r, false);
      const f = file(gens, r.next() < 0.5 ? gens : shuffled(r, gens), layoutFor(r, true), r);
      const d = disagreement(f);
      expect(d.mismatch, `case ${i}`).toBeUndefined();
      expect(d.served, `case ${i}: the fast path declined a plain header`).toBe(true);
    }
  });

  test(`on ${CASES} generated valid headers in forms only the strict reader takes`, () => {
    const r = prng(0x57c1c7);
    for (let i = 0; i < CASES; i++) {
      const gens = tensors(r, true);
      const f = file(gens, shuffled(r, gens), layoutFor(r, false), r);
      const d = disagreement(f);
      expect(d.mismatch, `case ${i}`).toBeUndefined();
      expect(outcome(() => parseHeader(f, f.byteLength)), `case ${i}`).not.toHaveProperty("code");
    }
  });
});

describe("tensors on one spot have one order", () => {
  test("zero-size tensors sharing offsets come in name order, whatever the key order, on both readers", () => {
    const r = prng(0x71e5);
    let ties = 0;
    for (let i = 0; i < CASES; i++) {
      const gens = tensors(r, false);
      const layout = layoutFor(r, true);
      const a = readerOutcomes(file(gens, gens, layout, r));
      const b = readerOutcomes(file(gens, shuffled(r, gens), layout, r));
      // The same header whichever order its keys come in, from either reader.
      expect(a.strict, `case ${i}`).toEqual(b.strict);
      expect(a.fast, `case ${i}`).toEqual(b.fast);
      const h = parseHeader(...withSize(file(gens, shuffled(r, gens), layout, r)));
      for (let k = 1; k < h.order.length; k++) {
        const [x, y] = [h.tensors.get(h.order[k - 1]!)!, h.tensors.get(h.order[k]!)!];
        if (x.dataOffsets[0] !== y.dataOffsets[0] || x.dataOffsets[1] !== y.dataOffsets[1]) continue;
        ties++;
        expect(compareNames(h.order[k - 1]!, h.order[k]!), `case ${i}: ${h.order}`).toBeLessThan(0);
      }
    }
    expect(ties).toBeGreaterThan(100);
  });

  test("which of two bad tensors on one spot is reported does not depend on key order", () => {
    // Both at [0, 0]: "a" (F4 × 1) is MisalignedSlice, "b" (F32 × 1) is TensorInvalidInfo. The reference walks
    // them in hash order; here "a" comes first by name, whichever way the text lists them.
    const a: Gen = { name: "a", dtype: "F4", shape: [1], offsets: [0, 0] };
    const b: Gen = { name: "b", dtype: "F32", shape: [1], offsets: [0, 0] };
    const r = prng(1);
    const plainLayout: Layout = { ws: "", metadata: undefined, oddForms: false };
    for (const order of [[a, b], [b, a]]) {
      const f = file([a, b], order, plainLayout, r);
      expect(disagreement(f).mismatch).toBeUndefined();
      expect(readerOutcomes(f).parsed).toEqual({ code: "MisalignedSlice" });
    }
  });

  test("integer-like names on one spot: JSON.parse enumerates them first, the order is still by name", () => {
    const z = (name: string): Gen => ({ name, dtype: "U8", shape: [0], offsets: [0, 0] });
    const gens = [z("b"), z("10"), z("2"), z("a")];
    const h = parseHeader(...withSize(file(gens, gens, { ws: "", metadata: undefined, oddForms: false }, prng(2))));
    expect(h.order).toEqual(["10", "2", "a", "b"]);
    expect([...h.tensors.keys()]).toEqual(["10", "2", "a", "b"]);
  });
});

const withSize = (f: Uint8Array) => [f, f.byteLength] as const;
