/**
 * Mutation fuzzing from the real fixtures: bit flips, byte inserts and deletes, new N values, cuts,
 * spliced JSON tokens and numbers swapped for huge or float ones. Every mutated file goes through
 * `parseHeader` in memory and through `open()` + reading every tensor (`bytes`, `typed()`, `toFloat32()`):
 * the only error allowed is a `SafetensorsError`, both paths must agree, the header's two readers (the
 * `JSON.parse` fast path and the strict reader) must give the same header or error, and the whole run must finish
 * (a hang would hit the test timeout). Seeded, so a failure names a case that replays: set
 * `TENSORMAP_FUZZ_SEED` to explore other seeds.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { parseHeader } from "../../src/format/header.ts";
import { open } from "../../src/checkpoint/open.ts";
import { concat, u64le } from "../support/bytes.ts";
import { disagreement, prng, type Rng } from "./header-readers.ts";

const CASES = 10_000;
const SEED = Number(process.env.TENSORMAP_FUZZ_SEED ?? 0x5afe7e45);

const FIXTURES = ["all-dtypes.safetensors", "tiny-gpt2.safetensors"].map((f) => {
  const b = readFileSync(resolve(process.cwd(), "../shared/fixtures/safetensors", f));
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
});


const enc = new TextEncoder();

const randomBytes = (r: Rng, n: number) => Uint8Array.from({ length: n }, () => r.int(256));
const dec = new TextDecoder("utf-8", { fatal: false });

const headerLength = (f: Uint8Array) => (f.byteLength < 8 ? 0 : Number(new DataView(f.buffer, f.byteOffset, 8).getBigUint64(0, true)));

function withN(f: Uint8Array, n: bigint): Uint8Array {
  const out = f.slice();
  if (out.byteLength >= 8) new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
}

/** Splits a file into its header text and data, and puts one back together (N recomputed). */
function split(f: Uint8Array) {
  const n = Math.min(headerLength(f), Math.max(0, f.byteLength - 8));
  return { text: dec.decode(f.subarray(8, 8 + n)), data: f.subarray(8 + n) };
}
function join3(text: string, data: Uint8Array): Uint8Array {
  const h = enc.encode(text);
  return concat(u64le(BigInt(h.byteLength)), h, data);
}

const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}[\],:]|\s+/g;

/** Tokens and numbers that trip JSON.parse-based readers. */
const NASTY = [
  "0", "1", "-1", "-0", "+1", "01", "2.0", "1e2", "1E2", "1e400", "-1e400", "4294967296", "4294967297",
  "9007199254740992", "9007199254740993", "9223372036854775808", "18446744073709551615", "18446744073709551616",
  "99999999999999999999999999999999", "NaN", "Infinity", "null", "true", "[]", "{}", '""', '"__proto__"',
  '"__metadata__"', '"constructor"', '"toString"', '"F4"', '"F6_E2M3"', '"C64"', '"BOOL"', '"X"',
  String.raw`"\ud800"`, String.raw`"\u0000"`, "\ufeff", "\u0000", ",", ":", "{", "}", "[", "]",
];

/** One mutation of a file. Several may stack. */
const MUTATORS: Array<(f: Uint8Array, r: Rng) => Uint8Array> = [
  // bit flips, mostly in the header where they matter
  (f, r) => {
    const out = f.slice();
    const flips = 1 + r.int(4);
    const span = r.next() < 0.8 ? Math.min(out.byteLength, 8 + headerLength(f)) : out.byteLength;
    for (let i = 0; i < flips && span > 0; i++) out[r.int(span)]! ^= 1 << r.int(8);
    return out;
  },
  // a random byte inserted or deleted (N kept: the header and data shift against it)
  (f, r) => {
    const at = r.int(f.byteLength + 1);
    if (r.next() < 0.5 && f.byteLength > 0) return concat(f.subarray(0, at), f.subarray(at + 1));
    return concat(f.subarray(0, at), randomBytes(r, 1), f.subarray(at));
  },
  // a new N
  (f, r) => {
    const n = BigInt(headerLength(f));
    const choices = [n + 1n, n - 1n, n + BigInt(r.int(64)) - 32n, 0n, 1n, 100_000_000n, 100_000_001n, 2n ** 32n + n, 2n ** 63n, 2n ** 64n - 1n, BigInt(f.byteLength), BigInt(r.int(2 ** 31))];
    const v = r.pick(choices);
    return withN(f, v < 0n ? 0n : v);
  },
  // cut short, or bytes added at the end
  (f, r) => (r.next() < 0.7 ? f.slice(0, r.int(f.byteLength + 1)) : concat(f, randomBytes(r, 1 + r.int(8)))),
  // JSON tokens deleted, duplicated, swapped or replaced
  (f, r) => {
    const { text, data } = split(f);
    const tokens = text.match(TOKEN) ?? [];
    if (tokens.length === 0) return f;
    const i = r.int(tokens.length);
    const j = r.int(tokens.length);
    switch (r.int(4)) {
      case 0: tokens.splice(i, 1); break;
      case 1: tokens.splice(i, 0, tokens[j]!); break;
      case 2: [tokens[i], tokens[j]] = [tokens[j]!, tokens[i]!]; break;
      default: tokens[i] = r.pick(NASTY);
    }
    return join3(tokens.join(""), data);
  },
  // a number replaced by a nearby one (reaches the offset and size checks) or a nasty one
  (f, r) => {
    const { text, data } = split(f);
    const numbers = [...text.matchAll(/\d+/g)];
    if (numbers.length === 0) return f;
    const m = r.pick(numbers);
    const v = BigInt(m[0]);
    const repl = r.next() < 0.6 ? String(v + BigInt(r.int(9) - 4) < 0n ? 0n : v + BigInt(r.int(9) - 4)) : r.pick(NASTY);
    return join3(text.slice(0, m.index) + repl + text.slice(m.index! + m[0].length), data);
  },
  // a dtype swapped for another (sizes then disagree, or sub-byte counts misalign)
  (f, r) => {
    const { text, data } = split(f);
    const dtypes = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"];
    const found = [...text.matchAll(/"dtype":"(\w+)"/g)];
    if (found.length === 0) return f;
    const m = r.pick(found);
    return join3(text.slice(0, m.index) + `"dtype":"${r.pick(dtypes)}"` + text.slice(m.index! + m[0].length), data);
  },
];

function mutate(r: Rng): Uint8Array {
  let f: Uint8Array = r.pick(FIXTURES);
  const rounds = 1 + r.int(3);
  for (let i = 0; i < rounds; i++) f = r.pick(MUTATORS)(f, r);
  return f;
}

/** What reading a file in memory gives: "ok" or the error code; anything but a SafetensorsError is rethrown. */
function inMemory(f: Uint8Array): string {
  try {
    parseHeader(f, f.byteLength);
    return "ok";
  } catch (e) {
    if (e instanceof SafetensorsError) return e.code;
    throw e;
  }
}

/** The same through open(), then every tensor read and decoded; errors past open() are reported apart. */
async function throughOpen(path: string, backend: "read" | "auto"): Promise<string> {
  let file;
  try {
    file = await open(path, { backend });
  } catch (e) {
    if (e instanceof SafetensorsError) return e.code;
    throw e;
  }
  try {
    for (const name of file.keys()) {
      const t = file.tensor(name);
      if (t.bytes.byteLength !== file.info(name).byteLength) throw new Error(`${name}: ${t.bytes.byteLength} bytes read, info says ${file.info(name).byteLength}`);
      try {
        t.typed();
        t.toFloat32();
      } catch (e) {
        if (!(e instanceof SafetensorsError)) throw e;
      }
    }
    return "ok";
  } finally {
    file.close();
  }
}

describe("fuzz: mutated fixtures", () => {
  const dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "tensormap-fuzz-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test(`${CASES} mutated files: only SafetensorsError, same answer in memory and from disk (seed ${SEED})`, async () => {
    const r = prng(SEED);
    const path = join(dir, "case.safetensors");
    const outcomes = new Map<string, number>();
    let done = 0;
    let served = 0;
    for (let i = 0; i < CASES; i++) {
      const f = mutate(r);
      const context = `case ${i} (seed ${SEED})`;
      let memory: string;
      try {
        memory = inMemory(f);
      } catch (e) {
        throw new Error(`parseHeader threw a non-SafetensorsError on ${context}: ${String(e)}`);
      }
      const readers = disagreement(f);
      if (readers.mismatch) throw new Error(`the header readers disagree on ${context}: ${readers.mismatch}`);
      if (readers.served) served++;
      writeFileSync(path, f);
      let disk: string;
      try {
        // Half through the read backend, half through the runtime's default (the mapping, where FFI is).
        disk = await throughOpen(path, i % 2 ? "auto" : "read");
      } catch (e) {
        throw new Error(`open()/read threw a non-SafetensorsError on ${context}: ${String(e)}`);
      }
      if (disk !== memory) throw new Error(`open() says ${disk}, parseHeader says ${memory} on ${context}`);
      outcomes.set(memory, (outcomes.get(memory) ?? 0) + 1);
      done++;
    }
    expect(done).toBe(CASES);
    // The fast path itself was held to the strict reader's answer, not only bypassed.
    expect(served).toBeGreaterThan(0);
    // The mutators reach every stage of validation, not just the first check.
    for (const code of ["ok", "HeaderTooSmall", "HeaderTooLarge", "InvalidHeaderLength", "InvalidHeader", "InvalidHeaderDeserialization", "InvalidOffset", "TensorInvalidInfo", "MisalignedSlice", "MetadataIncompleteBuffer"]) {
      expect(outcomes.get(code) ?? 0, `${code} reached (outcomes: ${JSON.stringify([...outcomes])})`).toBeGreaterThan(0);
    }
  }, 120_000);
});
