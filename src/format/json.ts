/**
 * A strict JSON cursor with serde_json's rules, because `JSON.parse` disagrees with the reference on exactly
 * the inputs an attacker picks: it rounds integers above 2^53, accepts lone surrogate escapes, keeps only the
 * last of duplicate keys and turns `__proto__` into a trap. The header reader walks the document through this
 * cursor, reading the fields it knows in place and skipping (but still validating) the rest, so a 20,000-tensor
 * header builds no intermediate tree. Nesting is bounded as serde_json bounds it.
 */
import { SafetensorsError } from "../errors.ts";

/** serde_json's default recursion limit: 128 levels, the 128th refused. */
const MAX_DEPTH = 127;

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
// deno-lint-ignore no-control-regex
const ESCAPE_OR_CONTROL = /[\\\x00-\x1f]/;

export type JsonKind = "object" | "array" | "string" | "number" | "literal";

/**
 * Reads one JSON document front to back.
 *
 * @example
 * ```ts
 * const r = new JsonReader('{"a": [1, 18446744073709551615]}');
 * if (r.enter("object", 0)) do {
 *   console.log(r.key());
 *   if (r.enter("array", 1)) do console.log(r.u64()); while (r.more("array"));
 * } while (r.more("object"));
 * r.end();
 * ```
 */
export class JsonReader {
  #text: string;
  #i = 0;

  constructor(text: string) {
    this.#text = text;
  }

  /** Throws the deserialization error, pointing at the current character. */
  fail(message: string): never {
    throw new SafetensorsError("InvalidHeaderDeserialization", `invalid header JSON: ${message} at character ${this.#i}`);
  }

  /** What the next value is, after whitespace. */
  peek(): JsonKind {
    this.#ws();
    const c = this.#text.charCodeAt(this.#i);
    if (c === 0x7b) return "object";
    if (c === 0x5b) return "array";
    if (c === 0x22) return "string";
    if (c === 0x2d || isDigit(c)) return "number";
    if (c === 0x74 || c === 0x66 || c === 0x6e) return "literal";
    return this.#i >= this.#text.length ? this.fail("EOF while parsing a value") : this.fail("expected value");
  }

  /**
   * Enters an object or array (by its opening bracket) at nesting `depth`. Returns false, with the container
   * consumed, when it is empty; otherwise read an item (for objects, `key()` then its value) and call
   * `more()` until it returns false. A pull API: no callback per item, since headers hold 100,000 of them.
   */
  enter(kind: "object" | "array", depth: number): boolean {
    const open = kind === "object" ? 0x7b : 0x5b;
    this.#ws();
    if (this.#text.charCodeAt(this.#i) !== open) this.fail(kind === "object" ? "expected a map" : "expected a sequence");
    if (depth >= MAX_DEPTH) this.fail("recursion limit exceeded");
    this.#i++;
    this.#ws();
    if (this.#text.charCodeAt(this.#i) !== open + 2) return true;
    this.#i++;
    return false;
  }

  /** An object's next key and its colon. */
  key(): string {
    this.#ws();
    if (this.#text.charCodeAt(this.#i) !== 0x22) this.fail("key must be a string");
    const key = this.#string();
    this.#ws();
    if (this.#text.charCodeAt(this.#i++) !== 0x3a) this.fail("expected `:`");
    return key;
  }

  /** After an item: true after a comma (another item follows), false at the closing bracket of `kind`. */
  more(kind: "object" | "array"): boolean {
    const close = kind === "object" ? 0x7d : 0x5d;
    this.#ws();
    const c = this.#text.charCodeAt(this.#i++);
    if (c === 0x2c) return true;
    if (c !== close) this.fail(`expected \`,\` or \`${String.fromCharCode(close)}\``);
    return false;
  }

  string(): string {
    if (this.peek() !== "string") this.fail("expected a string");
    return this.#string();
  }

  /** `null` consumed, or false (nothing consumed) when the next value is something else. */
  null(): boolean {
    this.#ws();
    if (!this.#text.startsWith("null", this.#i)) return false;
    this.#i += 4;
    return true;
  }

  /**
   * An unsigned 64-bit integer as serde reads one: digits only (`2.0`, `1e2`, `-0` are not integers), below
   * 2^64. A plain number below 2^53, a bigint above; `null` if the next value is a number but no such integer.
   */
  u64(): number | bigint | null {
    if (this.peek() !== "number") return null;
    const start = this.#i;
    const plain = this.#number();
    const text = this.#text.slice(start, this.#i);
    if (!plain) return null;
    if (text.length <= 15) return Number(text);
    const v = BigInt(text);
    return v >= 1n << 64n ? null : v <= Number.MAX_SAFE_INTEGER ? Number(v) : v;
  }

  /** Consumes any value, validating it all the same. */
  skip(depth: number): void {
    switch (this.peek()) {
      case "object":
        if (this.enter("object", depth)) do this.key(), this.skip(depth + 1); while (this.more("object"));
        return;
      case "array":
        if (this.enter("array", depth)) do this.skip(depth + 1); while (this.more("array"));
        return;
      case "string":
        this.#string();
        return;
      case "number": {
        const start = this.#i;
        this.#number();
        if (!Number.isFinite(Number(this.#text.slice(start, this.#i)))) this.fail("number out of range");
        return;
      }
      default:
        for (const word of ["true", "false", "null"]) {
          if (this.#text.startsWith(word, this.#i)) {
            this.#i += word.length;
            return;
          }
        }
        this.fail("expected value");
    }
  }

  /** Only whitespace may follow the document. */
  end(): void {
    this.#ws();
    if (this.#i < this.#text.length) this.fail("trailing characters");
  }

  #ws(): void {
    const t = this.#text;
    while (this.#i < t.length && isWs(t.charCodeAt(this.#i))) this.#i++;
  }

  /** A number token; true when it is a plain run of digits (no sign, fraction or exponent). */
  #number(): boolean {
    const t = this.#text;
    const start = this.#i;
    if (t.charCodeAt(this.#i) === 0x2d) this.#i++;
    const intStart = this.#i;
    while (isDigit(t.charCodeAt(this.#i))) this.#i++;
    const digits = this.#i - intStart;
    if (digits === 0 || (digits > 1 && t.charCodeAt(intStart) === 0x30)) this.fail("invalid number");
    let plain = start === intStart;
    if (t.charCodeAt(this.#i) === 0x2e) {
      plain = false;
      const f = ++this.#i;
      while (isDigit(t.charCodeAt(this.#i))) this.#i++;
      if (this.#i === f) this.fail("invalid number");
    }
    const e = t.charCodeAt(this.#i);
    if (e === 0x65 || e === 0x45) {
      plain = false;
      this.#i++;
      const sign = t.charCodeAt(this.#i);
      if (sign === 0x2b || sign === 0x2d) this.#i++;
      const x = this.#i;
      while (isDigit(t.charCodeAt(this.#i))) this.#i++;
      if (this.#i === x) this.fail("invalid number");
    }
    return plain;
  }

  /** A string token (the cursor is on its opening quote). */
  #string(): string {
    const t = this.#text;
    let i = ++this.#i;
    // Nearly every string is plain: find its end natively, which is fast even before the JIT warms up.
    const end = t.indexOf('"', i);
    if (end >= 0) {
      const plain = t.slice(i, end);
      if (!ESCAPE_OR_CONTROL.test(plain)) {
        this.#i = end + 1;
        return plain;
      }
    }
    let out = "";
    let runStart = i;
    for (;;) {
      if (i >= t.length) {
        this.#i = i;
        this.fail("EOF while parsing a string");
      }
      const c = t.charCodeAt(i);
      if (c === 0x22) {
        this.#i = i + 1;
        return out + t.slice(runStart, i);
      }
      if (c < 0x20) {
        this.#i = i;
        this.fail("control character in string");
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += t.slice(runStart, i);
      this.#i = i + 2;
      switch (t.charCodeAt(i + 1)) {
        case 0x22: out += '"'; break;
        case 0x5c: out += "\\"; break;
        case 0x2f: out += "/"; break;
        case 0x62: out += "\b"; break;
        case 0x66: out += "\f"; break;
        case 0x6e: out += "\n"; break;
        case 0x72: out += "\r"; break;
        case 0x74: out += "\t"; break;
        case 0x75: out += this.#unicodeEscape(); break;
        default:
          this.#i = i + 1;
          this.fail("invalid escape");
      }
      i = runStart = this.#i;
    }
  }

  /** `\uXXXX` (the cursor is past the `u`), pairing surrogates as serde does: a lone one is an error. */
  #unicodeEscape(): string {
    const hi = this.#hex4();
    if (hi >= 0xdc00 && hi <= 0xdfff) this.fail("lone trailing surrogate in hex escape");
    if (hi < 0xd800 || hi > 0xdbff) return String.fromCharCode(hi);
    if (this.#text.charCodeAt(this.#i) !== 0x5c || this.#text.charCodeAt(this.#i + 1) !== 0x75) this.fail("lone leading surrogate in hex escape");
    this.#i += 2;
    const lo = this.#hex4();
    if (lo < 0xdc00 || lo > 0xdfff) this.fail("lone leading surrogate in hex escape");
    return String.fromCharCode(hi, lo);
  }

  #hex4(): number {
    const h = this.#text.slice(this.#i, this.#i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail("invalid \\u escape");
    this.#i += 4;
    return parseInt(h, 16);
  }
}
