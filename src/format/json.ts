/**
 * A strict JSON reader with serde_json's rules, because `JSON.parse` disagrees with the reference on
 * exactly the inputs an attacker picks: it rounds integers above 2^53, accepts lone surrogate escapes,
 * and turns keys like `__proto__` into traps. Here objects keep every entry in order (duplicates too),
 * numbers keep their text, and nesting is bounded as serde_json bounds it.
 */
import { SafetensorsError } from "../errors.ts";

/** A JSON object: its entries in document order, duplicates kept. */
export class JsonObject {
  constructor(readonly entries: [string, JsonValue][]) {}
}

/** A JSON number, kept as written so integers stay exact. */
export class JsonNumber {
  constructor(readonly text: string) {}

  /** The value as an unsigned 64-bit integer, or `null` if serde would not read it as one (`2.0`, `1e2`, `-1`, ≥ 2^64). */
  asU64(): bigint | null {
    if (!/^(0|[1-9][0-9]{0,19})$/.test(this.text)) return null;
    const v = BigInt(this.text);
    return v < 1n << 64n ? v : null;
  }
}

export type JsonValue = JsonObject | JsonValue[] | JsonNumber | string | boolean | null;

/** serde_json's default recursion limit: 128 levels, the 128th refused. */
const MAX_DEPTH = 127;

function fail(message: string, at: number): never {
  throw new SafetensorsError("InvalidHeaderDeserialization", `invalid header JSON: ${message} at character ${at}`);
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * Parses one JSON document (whitespace may surround it; nothing else may follow).
 *
 * @example
 * ```ts
 * const v = parseJson('{"a": [1, 18446744073709551615]}');
 * ```
 */
export function parseJson(text: string): JsonValue {
  let i = 0;
  const n = text.length;

  const skipWs = () => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };

  const parseString = (): string => {
    // text[i] is the opening quote.
    i++;
    let out = "";
    let runStart = i;
    for (;;) {
      if (i >= n) fail("EOF while parsing a string", i);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(runStart, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string", i);
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += text.slice(runStart, i);
      i++;
      const e = text.charCodeAt(i);
      i++;
      switch (e) {
        case 0x22: out += '"'; break;
        case 0x5c: out += "\\"; break;
        case 0x2f: out += "/"; break;
        case 0x62: out += "\b"; break;
        case 0x66: out += "\f"; break;
        case 0x6e: out += "\n"; break;
        case 0x72: out += "\r"; break;
        case 0x74: out += "\t"; break;
        case 0x75: {
          const hi = hex4();
          if (hi >= 0xdc00 && hi <= 0xdfff) fail("lone trailing surrogate in hex escape", i);
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (text.charCodeAt(i) !== 0x5c || text.charCodeAt(i + 1) !== 0x75) fail("lone leading surrogate in hex escape", i);
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail("lone leading surrogate in hex escape", i);
            out += String.fromCharCode(hi, lo);
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          fail("invalid escape", i - 1);
      }
      runStart = i;
    }
  };

  const hex4 = (): number => {
    const h = text.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("invalid \\u escape", i);
    i += 4;
    return parseInt(h, 16);
  };

  const parseNumber = (): JsonNumber => {
    const m = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = i;
    const r = m.exec(text);
    if (!r || r[0] === "-" || r[0].length === 0) fail("invalid number", i);
    const after = text.charCodeAt(i + r[0].length);
    // serde rejects what the regex would stop short of: `01`, `1.`, `1e`, `-`.
    if ((after >= 0x30 && after <= 0x39) || after === 0x2e || after === 0x65 || after === 0x45) fail("invalid number", i);
    i += r[0].length;
    if (!Number.isFinite(Number(r[0]))) fail("number out of range", i);
    return new JsonNumber(r[0]);
  };

  const literal = (word: string, value: JsonValue): JsonValue => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return value;
    }
    return fail("expected value", i);
  };

  const parseValue = (depth: number): JsonValue => {
    skipWs();
    if (i >= n) fail("EOF while parsing a value", i);
    const c = text.charCodeAt(i);
    if (c === 0x22) return parseString();
    if (c === 0x7b || c === 0x5b) {
      if (depth >= MAX_DEPTH) fail("recursion limit exceeded", i);
      return c === 0x7b ? parseObject(depth + 1) : parseArray(depth + 1);
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return parseNumber();
    if (c === 0x74) return literal("true", true);
    if (c === 0x66) return literal("false", false);
    if (c === 0x6e) return literal("null", null);
    return fail("expected value", i);
  };

  const parseArray = (depth: number): JsonValue[] => {
    i++;
    const items: JsonValue[] = [];
    skipWs();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      return items;
    }
    for (;;) {
      items.push(parseValue(depth));
      skipWs();
      const c = text.charCodeAt(i++);
      if (c === 0x5d) return items;
      if (c !== 0x2c) fail("expected `,` or `]`", i - 1);
    }
  };

  const parseObject = (depth: number): JsonObject => {
    i++;
    const entries: [string, JsonValue][] = [];
    skipWs();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return new JsonObject(entries);
    }
    for (;;) {
      skipWs();
      if (text.charCodeAt(i) !== 0x22) fail("key must be a string", i);
      const key = parseString();
      skipWs();
      if (text.charCodeAt(i++) !== 0x3a) fail("expected `:`", i - 1);
      entries.push([key, parseValue(depth)]);
      skipWs();
      const c = text.charCodeAt(i++);
      if (c === 0x7d) return new JsonObject(entries);
      if (c !== 0x2c) fail("expected `,` or `}`", i - 1);
    }
  };

  const value = parseValue(0);
  skipWs();
  if (i < n) fail("trailing characters", i);
  return value;
}
