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

/** Non-negative integers of up to 15 digits come as plain numbers; every other number as a {@link JsonNumber}. */
export type JsonValue = JsonObject | JsonValue[] | JsonNumber | number | string | boolean | null;

/** serde_json's default recursion limit: 128 levels, the 128th refused. */
const MAX_DEPTH = 127;

function fail(message: string, at: number): never {
  throw new SafetensorsError("InvalidHeaderDeserialization", `invalid header JSON: ${message} at character ${at}`);
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

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

  const parseNumber = (): JsonNumber | number => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const intStart = i;
    while (i < n && isDigit(text.charCodeAt(i))) i++;
    const intDigits = i - intStart;
    if (intDigits === 0 || (intDigits > 1 && text.charCodeAt(intStart) === 0x30)) fail("invalid number", start);
    let plain = start === intStart;
    if (text.charCodeAt(i) === 0x2e) {
      plain = false;
      const f = ++i;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      if (i === f) fail("invalid number", start);
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      plain = false;
      i++;
      if (text.charCodeAt(i) === 0x2b || text.charCodeAt(i) === 0x2d) i++;
      const x = i;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      if (i === x) fail("invalid number", start);
    }
    // Small non-negative integers, nearly every number in a header, stay plain numbers.
    if (plain && intDigits <= 15) return Number(text.slice(start, i));
    const raw = text.slice(start, i);
    if (!Number.isFinite(Number(raw))) fail("number out of range", start);
    return new JsonNumber(raw);
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
