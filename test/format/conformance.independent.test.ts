/**
 * An independent conformance set, kept apart from `conformance.vectors.ts`: it starts from a real file
 * written by the reference (`all-dtypes.safetensors`), mutates it, and predicts the reference's answer
 * from DESIGN.md §1 alone, with its own exact (BigInt) model of the validation walk. Nothing here
 * shares code with the main vectors or with `src/format`.
 */
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { parseHeader } from "../../src/format/header.ts";
import { open } from "../../src/checkpoint/open.ts";

const FIXTURE = readFileSync(resolve(process.cwd(), "../shared/fixtures/safetensors/all-dtypes.safetensors"));
const ORIGINAL = new Uint8Array(FIXTURE.buffer, FIXTURE.byteOffset, FIXTURE.byteLength);
const N = Number(new DataView(ORIGINAL.buffer, ORIGINAL.byteOffset).getBigUint64(0, true));
const HEADER_TEXT = new TextDecoder().decode(ORIGINAL.subarray(8, 8 + N));
const DATA = ORIGINAL.subarray(8 + N);

type Outcome = "ok" | "HeaderTooSmall" | "HeaderTooLarge" | "InvalidHeaderLength" | "InvalidHeader"
  | "InvalidHeaderDeserialization" | "InvalidOffset" | "TensorInvalidInfo" | "ValidationOverflow"
  | "MisalignedSlice" | "MetadataIncompleteBuffer";

/** Element widths from DESIGN.md §1. */
const BITS: ReadonlyMap<string, bigint> = new Map(
  Object.entries({
    BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8,
    F8_E5M2FNUZ: 8, I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
  }).map(([k, v]) => [k, BigInt(v)]),
);

interface Entry {
  name: string;
  dtype: string;
  shape: bigint[];
  offsets: [bigint, bigint];
}

/** The fixture's entries in header order, read with a parser of its own (the fixture is plain ASCII JSON). */
const ENTRIES: Entry[] = [...HEADER_TEXT.matchAll(/"([^"]+)":\{"dtype":"(\w+)","shape":\[([\d,]*)\],"data_offsets":\[(\d+),(\d+)\]\}/g)].map(
  (m) => ({ name: m[1]!, dtype: m[2]!, shape: m[3] ? m[3].split(",").map(BigInt) : [], offsets: [BigInt(m[4]!), BigInt(m[5]!)] }),
);
const METADATA_JSON = HEADER_TEXT.match(/"__metadata__":(\{[^}]*\})/)![1]!;

const TWO_64 = 2n ** 64n;
const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

/** The validation walk of DESIGN.md §1, exact. `tieOrder` flips the order of entries with equal offsets. */
function walk(entries: Entry[], dataLength: bigint, tieOrder: 1 | -1): Outcome {
  const indexed = entries.map((e, i) => ({ e, i }));
  indexed.sort((a, b) => cmp(a.e.offsets[0], b.e.offsets[0]) || cmp(a.e.offsets[1], b.e.offsets[1]) || tieOrder * (a.i - b.i));
  let at = 0n;
  for (const { e } of indexed) {
    const [s, end] = e.offsets;
    if (s !== at || end < s) return "InvalidOffset";
    at = end;
    let count = 1n;
    for (const d of e.shape) {
      count *= d;
      if (count >= TWO_64) return "ValidationOverflow";
    }
    const bits = count * BITS.get(e.dtype)!;
    if (bits >= TWO_64) return "ValidationOverflow";
    if (bits % 8n !== 0n) return "MisalignedSlice";
    if (end - s !== bits / 8n) return "TensorInvalidInfo";
  }
  return at === dataLength ? "ok" : "MetadataIncompleteBuffer";
}

/** The predicted outcome, or undefined where equal offsets make the reference's answer depend on hash order. */
function predict(entries: Entry[], dataLength: bigint): Outcome | undefined {
  // A name given twice: the last one wins.
  const unique = [...new Map(entries.map((e) => [e.name, e])).values()];
  const a = walk(unique, dataLength, 1);
  return a === walk(unique, dataLength, -1) ? a : undefined;
}

/** Header JSON for entries (numbers printed exactly), with the fixture's metadata. */
function headerJson(entries: Entry[], metadata = METADATA_JSON): string {
  const body = entries.map((e) => `${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(",")}],"data_offsets":[${e.offsets.join(",")}]}`);
  return `{"__metadata__":${metadata}${body.length ? "," : ""}${body.join(",")}}`;
}

const enc = new TextEncoder();

/** `u64 N` · header (padded with `pad` to a multiple of 8) · data. */
function assemble(header: string | Uint8Array, data: Uint8Array = DATA, pad = " ", n?: bigint): Uint8Array {
  let h = typeof header === "string" ? enc.encode(header) : header;
  if (pad && h.byteLength % 8) {
    const padded = new Uint8Array(h.byteLength + (8 - (h.byteLength % 8)));
    padded.set(h);
    padded.fill(pad.charCodeAt(0), h.byteLength);
    h = padded;
  }
  const out = new Uint8Array(8 + h.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, n ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  out.set(data, 8 + h.byteLength);
  return out;
}

function outcome(file: Uint8Array): Outcome | string {
  try {
    parseHeader(file, file.byteLength);
    return "ok";
  } catch (e) {
    if (e instanceof SafetensorsError) return e.code;
    return `not a SafetensorsError: ${String(e)}`;
  }
}

interface Case {
  name: string;
  file: Uint8Array;
  expect: Outcome;
}

/** Structural mutations: offsets, shapes and dtypes of each tensor, predicted by the model. */
function structuralCases(): Case[] {
  const cases: Case[] = [];
  const add = (name: string, entries: Entry[], data: Uint8Array = DATA) => {
    const expect = predict(entries, BigInt(data.byteLength));
    if (expect) cases.push({ name, file: assemble(headerJson(entries), data), expect });
  };
  const edit = (i: number, change: Partial<Entry>) => ENTRIES.map((e, j) => (j === i ? { ...e, ...change } : e));
  ENTRIES.forEach((e, i) => {
    const [s, end] = e.offsets;
    add(`${e.name}: end + 1`, edit(i, { offsets: [s, end + 1n] }));
    if (end > s) add(`${e.name}: end - 1`, edit(i, { offsets: [s, end - 1n] }));
    add(`${e.name}: start + 1`, edit(i, { offsets: [s + 1n, end] }));
    if (s > 0n) add(`${e.name}: start - 1`, edit(i, { offsets: [s - 1n, end] }));
    add(`${e.name}: start and end swapped`, edit(i, { offsets: [end, s] }));
    add(`${e.name}: removed`, ENTRIES.filter((_, j) => j !== i));
    add(`${e.name}: listed twice, same entry`, [...ENTRIES, e]);
    add(`${e.name}: scalar`, edit(i, { shape: [] }));
    add(`${e.name}: extra dimension 1`, edit(i, { shape: [...e.shape, 1n] }));
    add(`${e.name}: extra dimension 0`, edit(i, { shape: [...e.shape, 0n] }));
    add(`${e.name}: first dimension doubled`, edit(i, { shape: e.shape.length ? [e.shape[0]! * 2n, ...e.shape.slice(1)] : [2n] }));
    add(`${e.name}: dimensions 2^32 × 2^32`, edit(i, { shape: [2n ** 32n, 2n ** 32n] }));
    add(`${e.name}: dimensions 2^32 × 2^32 × 0`, edit(i, { shape: [2n ** 32n, 2n ** 32n, 0n] }));
    add(`${e.name}: dimensions 0 × 2^32 × 2^32`, edit(i, { shape: [0n, 2n ** 32n, 2n ** 32n] }));
    add(`${e.name}: dimension 2^64 - 1`, edit(i, { shape: [TWO_64 - 1n] }));
    add(`${e.name}: dimension 2^53 + 1`, edit(i, { shape: [2n ** 53n + 1n] }));
    add(`${e.name}: dimension 2^61 + 1`, edit(i, { shape: [2n ** 61n + 1n] }));
    for (const dtype of BITS.keys()) if (dtype !== e.dtype) add(`${e.name}: dtype ${dtype}`, edit(i, { dtype }));
  });
  add("data one byte longer", ENTRIES, new Uint8Array([...DATA, 0]));
  add("data one byte shorter", ENTRIES, DATA.subarray(0, DATA.byteLength - 1));
  add("no data", ENTRIES, new Uint8Array());
  add("header order reversed", [...ENTRIES].reverse());
  add("header order sorted by name", [...ENTRIES].sort((a, b) => (a.name < b.name ? -1 : 1)));
  return cases;
}

/** The fixture's header text with the first match of `from` replaced. */
const textEdit = (from: string | RegExp, to: string) => {
  const edited = HEADER_TEXT.trimEnd().replace(from, to);
  if (edited === HEADER_TEXT.trimEnd()) throw new Error(`edit did not apply: ${from}`);
  return edited;
};

/** Text mutations a JSON.parse-based reader gets wrong, with the answer DESIGN.md §1 gives. */
function textCases(): Case[] {
  const body = HEADER_TEXT.trimEnd();
  const c = (name: string, file: Uint8Array, expect: Outcome): Case => ({ name, file, expect });
  const e = (name: string, from: string | RegExp, to: string, expect: Outcome) => c(name, assemble(textEdit(from, to)), expect);
  const withN = (n: bigint) => {
    const f = ORIGINAL.slice();
    new DataView(f.buffer).setBigUint64(0, n, true);
    return f;
  };
  return [
    c("the fixture as written", ORIGINAL, "ok"),
    c("re-padded with tabs and newlines", assemble(body, DATA, "\n"), "ok"),
    c("padded with NUL bytes", assemble(body, DATA, "\0"), "InvalidHeaderDeserialization"),
    c("padding starts with a letter", assemble(body + "x", DATA, " "), "InvalidHeaderDeserialization"),
    c("a byte-order mark in front", assemble("\ufeff" + body), "InvalidHeaderDeserialization"),
    c("whitespace in front", assemble(" \t\r\n" + body), "ok"),
    c("N = 100,000,001", withN(100_000_001n), "HeaderTooLarge"),
    c("N + 2^32", withN(BigInt(N) + 2n ** 32n), "HeaderTooLarge"),
    c("N = 2^64 - 1", withN(TWO_64 - 1n), "HeaderTooLarge"),
    c("N one past the end of the file", withN(BigInt(ORIGINAL.byteLength - 7)), "InvalidHeaderLength"),
    c("N shorter by the padding's length + 1", withN(BigInt(body.length - 1)), "InvalidHeaderDeserialization"),
    c("N longer by 8: data bytes become header", withN(BigInt(N + 8)), "InvalidHeaderDeserialization"),
    c("an invalid UTF-8 byte in a metadata value", assemble(enc.encode(body).map((b, i) => (i === body.indexOf("reference") ? 0xff : b))), "InvalidHeader"),
    c("an overlong '/' in a metadata value", assemble(new Uint8Array([...enc.encode(body.slice(0, body.indexOf("reference"))), 0xc0, 0xaf, ...enc.encode(body.slice(body.indexOf("reference")))])), "InvalidHeader"),
    e("a lone surrogate escape in metadata", '"pt"', String.raw`"\ud800"`, "InvalidHeaderDeserialization"),
    e("a valid surrogate pair escape in metadata", '"pt"', String.raw`"\ud83e\udd17"`, "ok"),
    e("metadata null", METADATA_JSON, "null", "ok"),
    e("metadata with a number value", '"pt"', "1", "InvalidHeaderDeserialization"),
    e("metadata with a null value", '"pt"', "null", "InvalidHeaderDeserialization"),
    e("metadata given twice", "{", `{"__metadata__":{},`, "InvalidHeaderDeserialization"),
    // Unsigned integers only: no fraction, exponent, sign, leading zero or quotes (JSON.parse takes most of these).
    ...["4.0", "4e0", "04", "+4", "-4", '"4"'].map((n) => e(`shape ${n}`, '"shape":[4,3]', `"shape":[${n},3]`, "InvalidHeaderDeserialization")),
    ...["96.0", "9.6e1", "-0"].map((n) => e(`offset ${n}`, '"data_offsets":[0,96]', `"data_offsets":[0,${n}]`, "InvalidHeaderDeserialization")),
    e("a fraction after a space", '"shape":[4,3]', '"shape":[4, 3.0]', "InvalidHeaderDeserialization"),
    e("a sign after a newline", '"shape":[4,3]', '"shape":[\n-4,3]', "InvalidHeaderDeserialization"),
    e("offset 2^64", '"data_offsets":[0,96]', `"data_offsets":[0,${TWO_64}]`, "InvalidHeaderDeserialization"),
    e("three offsets", '"data_offsets":[0,96]', '"data_offsets":[0,96,96]', "InvalidHeaderDeserialization"),
    e("an unknown dtype", '"dtype":"U64"', '"dtype":"U128"', "InvalidHeaderDeserialization"),
    e("dtype __proto__", '"dtype":"U64"', '"dtype":"__proto__"', "InvalidHeaderDeserialization"),
    e("dtype toString", '"dtype":"U64"', '"dtype":"toString"', "InvalidHeaderDeserialization"),
    e("dtype missing", '"dtype":"U64",', "", "InvalidHeaderDeserialization"),
    e("dtype given twice", '"dtype":"U64",', '"dtype":"U64","dtype":"U64",', "InvalidHeaderDeserialization"),
    e("an extra field in an entry", '"dtype":"U64",', '"dtype":"U64","note":[1,{"a":null}],', "ok"),
    e("1e999 in an extra field", '"dtype":"U64",', '"dtype":"U64","note":1e999,', "InvalidHeaderDeserialization"),
    e("a trailing comma", /\}\}$/, "},}", "InvalidHeaderDeserialization"),
    e("a tensor renamed __proto__", '"uint64"', '"__proto__"', "ok"),
    e("a tensor renamed constructor", '"uint64"', '"constructor"', "ok"),
    e("a tensor renamed toString", '"uint64"', '"toString"', "ok"),
    e("a tensor renamed __metadata__", '"uint64"', '"__metadata__"', "InvalidHeaderDeserialization"),
    e("an object instead of an entry", /"bool":\{[^}]*\}/, '"bool":{}', "InvalidHeaderDeserialization"),
    e("an entry as an array", /"bool":\{[^}]*\}/, '"bool":["BOOL",[2,3],[668,674]]', "ok"),
    c("the root as an array", assemble("[" + body.slice(1, -1) + "]"), "InvalidHeaderDeserialization"),
  ];
}

/** Every cut of the fixture: inside the prefix, inside the header, inside the data. */
function truncations(): Case[] {
  const cases: Case[] = [];
  for (let len = 0; len < ORIGINAL.byteLength; len++) {
    const expect: Outcome = len < 8 ? "HeaderTooSmall" : len < 8 + N ? "InvalidHeaderLength" : "MetadataIncompleteBuffer";
    cases.push({ name: `cut to ${len} bytes`, file: ORIGINAL.subarray(0, len), expect });
  }
  return cases;
}

describe("independent conformance: mutations of a reference-written file", () => {
  test("reads the fixture's entries", () => {
    expect(ENTRIES.length).toBe(22);
    expect(predict(ENTRIES, BigInt(DATA.byteLength))).toBe("ok");
  });

  const groups: Array<[string, () => Case[]]> = [["structural", structuralCases], ["text", textCases], ["truncation", truncations]];
  for (const [group, make] of groups) {
    test(`${group} mutations give the predicted codes`, () => {
      const cases = make();
      expect(cases.length).toBeGreaterThan(40);
      const wrong = cases.map((k) => ({ name: k.name, expect: k.expect, got: outcome(k.file) })).filter((r) => r.got !== r.expect);
      expect(wrong).toEqual([]);
    });
  }

  test("every outcome is reached", () => {
    const seen = new Set([...structuralCases(), ...textCases(), ...truncations()].map((k) => k.expect));
    expect([...seen].sort()).toEqual([
      "HeaderTooLarge", "HeaderTooSmall", "InvalidHeader", "InvalidHeaderDeserialization", "InvalidHeaderLength",
      "InvalidOffset", "MetadataIncompleteBuffer", "MisalignedSlice", "TensorInvalidInfo", "ValidationOverflow", "ok",
    ]);
  });
});

describe("independent conformance: open() agrees with the in-memory parser", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-independent-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("on every text mutation, and valid ones read back the fixture's bytes", async () => {
    const cases = textCases();
    for (const [i, k] of cases.entries()) {
      const path = join(dir, `${i}.safetensors`);
      writeFileSync(path, k.file);
      const file = await open(path, { backend: "read" }).catch((e: unknown) => e);
      if (k.expect !== "ok") {
        expect(file, k.name).toBeInstanceOf(SafetensorsError);
        expect((file as SafetensorsError).code, k.name).toBe(k.expect);
        continue;
      }
      expect(file, k.name).not.toBeInstanceOf(Error);
      const f = file as Awaited<ReturnType<typeof open>>;
      try {
        const names = f.keys();
        expect(names.length, k.name).toBe(22);
        for (const name of names) {
          const { dataOffsets } = f.info(name);
          expect(f.tensor(name).bytes, `${k.name}: ${name}`).toEqual(DATA.subarray(dataOffsets[0], dataOffsets[1]));
        }
      } finally {
        f.close();
      }
    }
  });
});
