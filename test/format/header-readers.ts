/**
 * Helpers for holding the header's two readers (the `JSON.parse` fast path and the strict reader) to one
 * answer, and the seeded generator the fuzz and differential tests draw inputs from.
 */
import { isDeepStrictEqual } from "node:util";
import { SafetensorsError } from "../../src/errors.ts";
import { headerReaders, parseHeader, type Header } from "../../src/format/header.ts";

/** mulberry32: small, fast, and the same sequence on every runtime. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
export type Rng = ReturnType<typeof prng>;

/** A header as comparable data: every field, the tensor map in its insertion order, the metadata's entries. */
export type Outcome =
  | { code: string }
  | { headerSize: number; dataStart: number; metadata: Array<[string, string]> | null; tensors: unknown[]; order: string[] };

function describeHeader(h: Header): Outcome {
  if (h.metadata !== null && Object.getPrototypeOf(h.metadata) !== null) throw new Error("metadata has a prototype");
  return {
    headerSize: h.headerSize,
    dataStart: h.dataStart,
    metadata: h.metadata === null ? null : Object.entries(h.metadata),
    tensors: [...h.tensors],
    order: h.order,
  };
}

/** What a reader makes of a file; anything but a SafetensorsError is rethrown. `null`: the fast path declined. */
export function outcome(read: () => Header | null): Outcome | null {
  try {
    const h = read();
    return h === null ? null : describeHeader(h);
  } catch (e) {
    if (e instanceof SafetensorsError) return { code: e.code };
    throw e;
  }
}

/** The answers of `parseHeader`, the strict reader alone and the fast path alone (null where it declined). */
export function readerOutcomes(file: Uint8Array): { parsed: Outcome; strict: Outcome; fast: Outcome | null } {
  return {
    parsed: outcome(() => parseHeader(file, file.byteLength))!,
    strict: outcome(() => headerReaders.strict(file, file.byteLength))!,
    fast: outcome(() => headerReaders.fast(file, file.byteLength)),
  };
}

/**
 * Where the readers disagree on `file`, a line saying how; `undefined` when they agree. `served` tells
 * whether the fast path gave a header (rather than an error before it, or declining).
 */
export function disagreement(file: Uint8Array): { mismatch?: string; served: boolean } {
  const { parsed, strict, fast } = readerOutcomes(file);
  const served = fast !== null && !("code" in fast);
  if (!isDeepStrictEqual(parsed, strict)) return { mismatch: `parseHeader ${show(parsed)} ≠ strict ${show(strict)}`, served };
  if (fast !== null && !isDeepStrictEqual(fast, strict)) return { mismatch: `fast ${show(fast)} ≠ strict ${show(strict)}`, served };
  return { served };
}

const show = (o: Outcome) => JSON.stringify(o, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
