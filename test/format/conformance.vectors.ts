/**
 * Conformance vectors: what safetensors 0.8 (`SafeTensors::read_metadata` in `safetensors/src/tensor.rs`,
 * used by the Python `safe_open`/`load_file`) accepts and rejects, and with which error name.
 *
 * The reference's order of checks, which decides the code when a file breaks several rules:
 *  1. fewer than 8 bytes                                   → HeaderTooSmall
 *  2. N (u64 LE) > 100_000_000                             → HeaderTooLarge
 *  3. 8 + N > file length                                  → InvalidHeaderLength
 *  4. bytes 8..8+N not UTF-8 (`core::str::from_utf8`: BOM kept, no replacement) → InvalidHeader
 *  5. `serde_json::from_str::<HashMetadata>` fails         → InvalidHeaderDeserialization
 *     (the whole JSON is parsed before anything is validated, so a syntax or type error anywhere wins
 *     over any offset error)
 *  6. tensors sorted by `(start, end)`; then for each tensor in that order, all of:
 *     start ≠ previous end (0 first) or end < start         → InvalidOffset
 *     product of shape (checked, left to right) overflows u64, or × bits overflows → ValidationOverflow
 *     element bits % 8 ≠ 0                                   → MisalignedSlice
 *     end − start ≠ bits / 8                                 → TensorInvalidInfo
 *     (so the first failing tensor in offset order decides, whatever its kind of failure)
 *  7. last end + 8 + N ≠ file length                        → MetadataIncompleteBuffer
 *
 * serde facts the vectors pin down (each was run through a build of that code path with serde 1.0 /
 * serde_json 1.0): `__metadata__` is `Option<HashMap<String, String>>` (null ok, duplicates of the key an
 * error, duplicate inner keys last-wins); every other key is a flattened `HashMap<String, TensorInfo>`
 * (duplicates last-wins, but every occurrence must deserialize); `TensorInfo { dtype, shape: Vec<usize>,
 * data_offsets: (usize, usize) }` has no `deny_unknown_fields` (extra keys ignored, but still parsed as
 * JSON) and, being buffered through serde's `Content`, may also be written as a 3-element array and its
 * dtype as a one-key map `{"F32": null}`; duplicate fields in an entry are an error; usize takes only
 * non-negative integer literals below 2^64 (no fraction, exponent, sign or leading zero; `-0` is a float);
 * any number that overflows f64 (`1e400`) is an error even in an ignored field; nesting deeper than 127
 * containers is an error; whitespace is only space, tab, CR, LF.
 */
import type { ErrorCode } from "../../src/errors.ts";
import { concat, u64le } from "../support/bytes.ts";

export type FormatCode = Extract<
  ErrorCode,
  | "HeaderTooSmall" | "HeaderTooLarge" | "InvalidHeaderLength" | "InvalidHeader" | "InvalidHeaderDeserialization"
  | "InvalidOffset" | "TensorInvalidInfo" | "ValidationOverflow" | "MisalignedSlice" | "MetadataIncompleteBuffer"
>;

/** One expected tensor: name, dtype, shape (`null`: not representable as numbers, not checked), offsets. */
export type ExpectedTensor = [name: string, dtype: string, shape: number[] | null, offsets: [number, number]];

export interface Vector {
  name: string;
  /** Why the reference answers this way (the rule and, for traps, the JavaScript mistake it catches). */
  why: string;
  /** The whole file, when the vector is not a header + data. */
  file?: Uint8Array;
  /** JSON header: a string is UTF-8 encoded as is; bytes are used as they are. */
  header?: string | Uint8Array;
  /** The u64 N written in front; defaults to the header's byte length. */
  n?: bigint;
  /** Data buffer after the header: a length (filled with {@link pattern}) or bytes. */
  data?: number | Uint8Array;
  expect: "ok" | FormatCode;
  /** For `ok`: every tensor the file holds, and the metadata as `[key, value]` pairs (or null). */
  tensors?: ExpectedTensor[];
  metadata?: Array<[string, string]> | null;
}

const enc = new TextEncoder();

/** The data bytes used when a vector gives only a length: distinct per position, so wrong offsets show. */
export function pattern(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 37 + 11) & 0xff;
  return out;
}

/** The bytes of a vector's file. */
export function buildFile(v: Vector): Uint8Array {
  if (v.file) return v.file;
  const header = typeof v.header === "string" ? enc.encode(v.header) : (v.header ?? new Uint8Array());
  const data = typeof v.data === "number" ? pattern(v.data) : (v.data ?? new Uint8Array());
  return concat(u64le(v.n ?? BigInt(header.byteLength)), header, data);
}

/** A tensor entry as JSON text (`extra` is spliced in raw, after the three fields). */
const t = (dtype: string, shape: Array<number | string>, offsets: Array<number | string>, extra = "") =>
  `{"dtype":"${dtype}","shape":[${shape.join(",")}],"data_offsets":[${offsets.join(",")}]${extra}}`;

/** A header from raw `[key, valueJson]` pairs (duplicates and odd values allowed); keys are JSON-quoted. */
const obj = (...pairs: Array<[string, string]>) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
/** Same, with keys written raw (escapes kept as written). */
const rawObj = (...pairs: Array<[string, string]>) => `{${pairs.map(([k, v]) => `"${k}":${v}`).join(",")}}`;

/** One tensor "x" whose shape and offsets are given as raw JSON number text. */
const num = (shape: string, offsets: string, dtype = "U8") => `{"x":{"dtype":"${dtype}","shape":[${shape}],"data_offsets":[${offsets}]}}`;

const bytes = (...parts: Array<string | number[]>) =>
  concat(...parts.map((p) => (typeof p === "string" ? enc.encode(p) : Uint8Array.from(p))));

const U8_1: ExpectedTensor = ["x", "U8", [1], [0, 1]];
const one = (extra: string) => obj(["x", t("U8", [1], [0, 1], extra)]);
const nest = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

const TWO_64 = "18446744073709551616";
const U64_MAX = "18446744073709551615";

export const VECTORS: Vector[] = [
  // ── 1. length prefix ───────────────────────────────────────────────────────────────────────────────────
  { name: "empty file", why: "buffer.len() < 8", file: new Uint8Array(0), expect: "HeaderTooSmall" },
  { name: "7 bytes", why: "buffer.len() < 8", file: bytes([2, 0, 0, 0, 0, 0, 0]), expect: "HeaderTooSmall" },
  { name: "7 bytes of a huge N", why: "the size check comes before N is read", file: bytes([255, 255, 255, 255, 255, 255, 255]), expect: "HeaderTooSmall" },
  { name: "N = 0", why: "empty JSON text: EOF while parsing a value", file: u64le(0n), expect: "InvalidHeaderDeserialization" },
  { name: "N = 0 with data after", why: "empty JSON text even though bytes follow", header: "", data: 8, expect: "InvalidHeaderDeserialization" },
  { name: "N = 1, nothing after", why: "8 + N > len", file: u64le(1n), expect: "InvalidHeaderLength" },
  { name: "N = 100,000,001", why: "N > MAX_HEADER_SIZE (100_000_000)", file: u64le(100_000_001n), expect: "HeaderTooLarge" },
  { name: "N = 100,000,000 in a short file", why: "N == MAX is allowed; then 8 + N > len", header: "{}", n: 100_000_000n, expect: "InvalidHeaderLength" },
  { name: "N = 2^64 - 1", why: "N > MAX_HEADER_SIZE", header: "{}", n: 2n ** 64n - 1n, expect: "HeaderTooLarge" },
  { name: "N = 2^63", why: "a u64 read as signed would be negative", header: "{}", n: 2n ** 63n, expect: "HeaderTooLarge" },
  { name: "N = 2^32 + 2", why: "N is 64-bit: reading only the low 32 bits would see 2 and accept `{}`", header: "{}", n: 2n ** 32n + 2n, expect: "HeaderTooLarge" },
  { name: "N = 2^53 + 1", why: "not representable as a double; still far above the limit", header: "{}", n: 2n ** 53n + 1n, expect: "HeaderTooLarge" },
  { name: "N one past the file", why: "8 + N > len", header: "{}", n: 3n, expect: "InvalidHeaderLength" },
  { name: "N past the file with invalid UTF-8", why: "the length check comes before UTF-8", header: bytes([0xff, 0xfe]), n: 9n, expect: "InvalidHeaderLength" },
  { name: "N too large but not past the file's end, hiding data", why: "data bytes become header text: trailing characters", header: obj(["x", t("U8", [2], [0, 2])]), data: bytes("ab"), n: BigInt(obj(["x", t("U8", [2], [0, 2])]).length + 2), expect: "InvalidHeaderDeserialization" },
  { name: "N cuts the JSON short", why: "EOF while parsing", header: obj(["x", t("U8", [1], [0, 1])]), n: BigInt(obj(["x", t("U8", [1], [0, 1])]).length - 1), data: bytes("}", [7]), expect: "InvalidHeaderDeserialization" },

  // ── 2. UTF-8 (core::str::from_utf8) ────────────────────────────────────────────────────────────────────
  { name: "lone continuation byte", why: "invalid UTF-8", header: bytes('{"__metadata__":{"a":"', [0x80], '"}}'), expect: "InvalidHeader" },
  { name: "overlong slash C0 AF", why: "overlong encodings are invalid UTF-8", header: bytes('{"__metadata__":{"a":"', [0xc0, 0xaf], '"}}'), expect: "InvalidHeader" },
  { name: "overlong NUL C0 80", why: "modified UTF-8 NUL is invalid", header: bytes('{"__metadata__":{"a":"', [0xc0, 0x80], '"}}'), expect: "InvalidHeader" },
  { name: "3-byte overlong E0 80 AF", why: "overlong", header: bytes('{"__metadata__":{"a":"', [0xe0, 0x80, 0xaf], '"}}'), expect: "InvalidHeader" },
  { name: "raw lone surrogate ED A0 80", why: "UTF-8 cannot encode surrogates", header: bytes('{"__metadata__":{"a":"', [0xed, 0xa0, 0x80], '"}}'), expect: "InvalidHeader" },
  { name: "CESU-8 surrogate pair", why: "surrogates encoded one by one are invalid", header: bytes('{"__metadata__":{"a":"', [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], '"}}'), expect: "InvalidHeader" },
  { name: "code point above U+10FFFF", why: "F4 90 80 80 is out of range", header: bytes('{"__metadata__":{"a":"', [0xf4, 0x90, 0x80, 0x80], '"}}'), expect: "InvalidHeader" },
  { name: "byte F5", why: "never valid in UTF-8", header: bytes('{"__metadata__":{"a":"', [0xf5, 0x80, 0x80, 0x80], '"}}'), expect: "InvalidHeader" },
  { name: "byte FF", why: "never valid in UTF-8", header: bytes('{"__metadata__":{"a":"', [0xff], '"}}'), expect: "InvalidHeader" },
  { name: "truncated 2-byte sequence at the end", why: "the header ends inside a character", header: bytes("{}", [0xc3]), expect: "InvalidHeader" },
  { name: "truncated 3-byte sequence before a quote", why: "E2 82 then '\"'", header: bytes('{"__metadata__":{"a":"', [0xe2, 0x82], '"}}'), expect: "InvalidHeader" },
  { name: "invalid UTF-8 in a tensor name", why: "invalid UTF-8", header: bytes('{"', [0xfe], '":', t("U8", [1], [0, 1]), "}"), data: 1, expect: "InvalidHeader" },
  { name: "invalid UTF-8 in the padding", why: "the whole N bytes are decoded, not just the JSON", header: bytes("{}", [0x80], "     "), expect: "InvalidHeader" },
  { name: "invalid UTF-8 and invalid JSON", why: "UTF-8 is checked first", header: bytes("{", [0xff]), expect: "InvalidHeader" },
  { name: "invalid UTF-8 in the data buffer", why: "data is never decoded", header: obj(["x", t("U8", [2], [0, 2])]), data: bytes([0xff, 0xc0]), expect: "ok", tensors: [["x", "U8", [2], [0, 2]]], metadata: null },
  { name: "BOM before the JSON", why: "from_utf8 keeps U+FEFF and serde_json does not skip it (TextDecoder strips it by default)", header: bytes([0xef, 0xbb, 0xbf], "{}"), expect: "InvalidHeaderDeserialization" },
  { name: "BOM after the JSON", why: "trailing characters", header: bytes("{}", [0xef, 0xbb, 0xbf]), expect: "InvalidHeaderDeserialization" },
  { name: "BOM inside a metadata value", why: "an ordinary character in a string", header: bytes('{"__metadata__":{"a":"', [0xef, 0xbb, 0xbf], 'x"}}'), expect: "ok", tensors: [], metadata: [["a", "\ufeffx"]] },
  { name: "multi-byte names", why: "valid UTF-8 names: é, 中, 😀", header: obj(["é", t("U8", [1], [0, 1])], ["中", t("U8", [1], [1, 2])], ["😀", t("U8", [1], [2, 3])]), data: 3, expect: "ok", tensors: [["é", "U8", [1], [0, 1]], ["中", "U8", [1], [1, 2]], ["😀", "U8", [1], [2, 3]]], metadata: null },
  { name: "U+FFFD as written", why: "EF BF BD is valid UTF-8: the replacement character itself, not a sign of a bad byte", header: bytes('{"__metadata__":{"a":"', [0xef, 0xbf, 0xbd], '"}}'), expect: "ok", tensors: [], metadata: [["a", "\ufffd"]] },
  { name: "U+FFFD and an invalid byte", why: "a real U+FFFD does not excuse a bad byte elsewhere", header: bytes('{"__metadata__":{"a":"', [0xef, 0xbf, 0xbd], '","b":"', [0xff], '"}}'), expect: "InvalidHeader" },
  { name: "U+2028 and U+2029 in a string", why: "valid JSON string characters", header: '{"__metadata__":{"a":"\u2028\u2029"}}', expect: "ok", tensors: [], metadata: [["a", "\u2028\u2029"]] },
  { name: "raw NUL byte inside a string", why: "valid UTF-8, but a control character in a JSON string", header: bytes('{"__metadata__":{"a":"', [0], '"}}'), expect: "InvalidHeaderDeserialization" },

  // ── 3. JSON text ───────────────────────────────────────────────────────────────────────────────────────
  { name: "empty object", why: "no tensors, no metadata, no data: valid", header: "{}", expect: "ok", tensors: [], metadata: null },
  { name: "empty object padded with spaces", why: "the writer pads to a multiple of 8", header: "{}      ", expect: "ok", tensors: [], metadata: null },
  { name: "JSON whitespace all around", why: "space, tab, CR, LF may lead and trail", header: " \t\r\n{ \t\r\n}\r\n\t ", expect: "ok", tensors: [], metadata: null },
  { name: "whitespace only", why: "EOF while parsing a value", header: "   ", expect: "InvalidHeaderDeserialization" },
  { name: "NUL padding", why: "NUL is not JSON whitespace: trailing characters", header: "{}\0\0\0\0\0\0", expect: "InvalidHeaderDeserialization" },
  { name: "form feed padding", why: "\\f is not JSON whitespace", header: "{}\f", expect: "InvalidHeaderDeserialization" },
  { name: "vertical tab padding", why: "\\v is not JSON whitespace", header: "{}\v", expect: "InvalidHeaderDeserialization" },
  { name: "NBSP padding", why: "U+00A0 is not JSON whitespace", header: "{}\u00a0", expect: "InvalidHeaderDeserialization" },
  { name: "ideographic space before the JSON", why: "U+3000 is not JSON whitespace (String.trim would strip it)", header: "\u3000{}", expect: "InvalidHeaderDeserialization" },
  { name: "trailing garbage", why: "trailing characters", header: "{}x", expect: "InvalidHeaderDeserialization" },
  { name: "two objects", why: "trailing characters", header: "{}{}", expect: "InvalidHeaderDeserialization" },
  { name: "stray closing bracket", why: "trailing characters", header: "{}]", expect: "InvalidHeaderDeserialization" },
  { name: "top-level null", why: "expected struct HashMetadata", header: "null", expect: "InvalidHeaderDeserialization" },
  { name: "top-level array", why: "expected a map", header: "[]", expect: "InvalidHeaderDeserialization" },
  { name: "top-level string", why: "expected a map", header: '"{}"', expect: "InvalidHeaderDeserialization" },
  { name: "top-level number", why: "expected a map", header: "0", expect: "InvalidHeaderDeserialization" },
  { name: "top-level true", why: "expected a map", header: "true", expect: "InvalidHeaderDeserialization" },
  { name: "unterminated object", why: "EOF", header: "{", expect: "InvalidHeaderDeserialization" },
  { name: "trailing comma in an object", why: "serde_json rejects trailing commas", header: '{"__metadata__":{"a":"b",}}', expect: "InvalidHeaderDeserialization" },
  { name: "trailing comma at the top level", why: "trailing comma", header: `{"x":${t("U8", [1], [0, 1])},}`, data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "trailing comma in shape", why: "trailing comma", header: num("1,", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "single-quoted key", why: "not JSON", header: "{'__metadata__':{}}", expect: "InvalidHeaderDeserialization" },
  { name: "unquoted key", why: "not JSON", header: "{__metadata__:{}}", expect: "InvalidHeaderDeserialization" },
  { name: "block comment", why: "not JSON", header: "{/**/}", expect: "InvalidHeaderDeserialization" },
  { name: "line comment", why: "not JSON", header: "{}//", expect: "InvalidHeaderDeserialization" },
  { name: "missing colon", why: "not JSON", header: '{"__metadata__" {}}', expect: "InvalidHeaderDeserialization" },
  { name: "unterminated string", why: "EOF while parsing a string", header: '{"__metadata__":{"a":"b}}', expect: "InvalidHeaderDeserialization" },
  { name: "raw tab inside a string", why: "control characters must be escaped", header: '{"__metadata__":{"a":"\t"}}', expect: "InvalidHeaderDeserialization" },
  { name: "raw newline inside a string", why: "control characters must be escaped", header: '{"__metadata__":{"a":"\n"}}', expect: "InvalidHeaderDeserialization" },
  { name: "raw DEL inside a string", why: "0x7F is not a JSON control character", header: '{"__metadata__":{"a":"\x7f"}}', expect: "ok", tensors: [], metadata: [["a", "\x7f"]] },
  { name: "escape \\x41", why: "invalid escape", header: String.raw`{"__metadata__":{"a":"\x41"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "escape \\U0041", why: "escapes are lower-case u only", header: String.raw`{"__metadata__":{"a":"\U0041"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "escape \\'", why: "invalid escape", header: String.raw`{"__metadata__":{"a":"\'"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "short \\u escape", why: "needs four hex digits", header: String.raw`{"__metadata__":{"a":"\u12"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "valid escapes", why: "\\/ \\\" \\\\ \\b \\f \\n \\r \\t \\u00E9 (upper-case hex digits)", header: String.raw`{"__metadata__":{"a\/":"\"\\\b\f\n\r\t\u00E9"}}`, expect: "ok", tensors: [], metadata: [["a/", '"\\\b\f\n\r\té']] },
  { name: "escaped surrogate pair", why: "a valid pair decodes to one character", header: String.raw`{"__metadata__":{"a":"\ud83d\ude00"}}`, expect: "ok", tensors: [], metadata: [["a", "😀"]] },
  { name: "escaped lone high surrogate", why: "serde_json refuses lone surrogates (JSON.parse accepts them)", header: String.raw`{"__metadata__":{"a":"\ud800"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "escaped lone low surrogate", why: "lone surrogate", header: String.raw`{"__metadata__":{"a":"\udc00"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "high surrogate then a letter escape", why: "lone surrogate", header: String.raw`{"__metadata__":{"a":"\ud800\u0041"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "high surrogate then a plain letter", why: "lone surrogate", header: String.raw`{"__metadata__":{"a":"\ud800x"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "reversed surrogate pair", why: "low then high is two lone surrogates", header: String.raw`{"__metadata__":{"a":"\ude00\ud83d"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "lone surrogate in a metadata key", why: "lone surrogate", header: String.raw`{"__metadata__":{"\ud800":"a"}}`, expect: "InvalidHeaderDeserialization" },
  { name: "lone surrogate in a tensor name", why: "lone surrogate", header: rawObj(["\\udfff", t("U8", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "lone surrogate in an ignored field", why: "ignored fields are still parsed as strings", header: one(String.raw`,"note":"\ud800"`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "escaped NUL in a name", why: "\\u0000 is a legal character in a name", header: rawObj(["a\\u0000b", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["a\0b", "U8", [1], [0, 1]]], metadata: null },
  { name: "nesting of 127 containers", why: "serde_json's recursion limit is 128 (object, entry, 125 arrays)", header: one(`,"deep":${nest(125)}`), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "nesting of 128 containers", why: "recursion limit exceeded (JSON.parse has no such limit)", header: one(`,"deep":${nest(126)}`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "100,000 nested arrays in an ignored field", why: "recursion limit, and a recursive JS parser must not overflow its stack", header: one(`,"deep":${nest(100_000)}`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "100,000 nested objects in an ignored field", why: "recursion limit", header: one(`,"deep":${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "a million unclosed arrays as a tensor entry", why: "recursion limit is hit before the missing brackets", header: `{"x":${"[".repeat(1_000_000)}`, expect: "InvalidHeaderDeserialization" },
  { name: "whitespace around every token", why: "JSON whitespace is allowed between all tokens", header: ' { "x" : { "dtype" : "U8" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 1 ] } } ', data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "upper-case surrogate pair escape", why: "hex digits of either case", header: String.raw`{"__metadata__":{"a":"\uD83D\uDE00"}}`, expect: "ok", tensors: [], metadata: [["a", "😀"]] },
  { name: "escaped NUL in a metadata value", why: "\\u0000 is a legal character", header: String.raw`{"__metadata__":{"a":"\u0000"}}`, expect: "ok", tensors: [], metadata: [["a", "\0"]] },
  { name: "NaN literal in an ignored field", why: "not JSON", header: one(',"x":NaN'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "Infinity literal in an ignored field", why: "not JSON", header: one(',"x":Infinity'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "undefined in an ignored field", why: "not JSON", header: one(',"x":undefined'), data: 1, expect: "InvalidHeaderDeserialization" },

  // ── 4. numbers where an unsigned integer (usize) is wanted ─────────────────────────────────────────────
  { name: "shape 1.0", why: "a fraction makes a float: invalid type, expected usize (JSON.parse gives 1)", header: num("1.0", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 1e0", why: "an exponent makes a float", header: num("1e0", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 1E0", why: "an exponent makes a float", header: num("1E0", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 10e-1", why: "a float even though it equals 1", header: num("10e-1", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape -1", why: "negative: invalid value for usize", header: num("-1", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape -0", why: "serde_json parses -0 as a float", header: num("-0", "0,0"), expect: "InvalidHeaderDeserialization" },
  { name: "shape +1", why: "a leading plus is not JSON", header: num("+1", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 01", why: "a leading zero is not JSON", header: num("01", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 00", why: "a leading zero is not JSON", header: num("00", "0,0"), expect: "InvalidHeaderDeserialization" },
  { name: "shape 0x1", why: "hex is not JSON", header: num("0x1", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape .5", why: "not JSON", header: num(".5", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 1.", why: "not JSON", header: num("1.", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape as a numeric string", why: "invalid type: string", header: num('"1"', "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape element null", why: "invalid type", header: num("null", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape element true", why: "invalid type", header: num("true", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape element nested array", why: "invalid type: sequence, expected usize", header: num("[1]", "0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape 2^64", why: "does not fit u64: parsed as a float", header: num(TWO_64, "0,0"), expect: "InvalidHeaderDeserialization" },
  { name: "shape 2^64 - 1", why: "fits u64; × 8 bits overflows", header: num(U64_MAX, "0,0"), expect: "ValidationOverflow" },
  { name: "shape 0e0", why: "a float even though it equals 0", header: num("0e0", "0,0"), expect: "InvalidHeaderDeserialization" },
  { name: "shape with 400 digits", why: "parsed as a float, not a usize", header: num("9".repeat(400), "0,0"), expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets 1.0", why: "float", header: num("1", "0,1.0"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets 1e0", why: "float", header: num("1", "0,1e0"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets -0", why: "-0 is a float", header: num("1", "-0,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets -1", why: "negative", header: num("1", "-1,0"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets as strings", why: "invalid type: string", header: num("1", '"0","1"'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets end 2^64", why: "does not fit u64", header: num("1", `0,${TWO_64}`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "1e400 in an ignored field", why: "serde_json refuses numbers that overflow f64, even where ignored (JSON.parse gives Infinity)", header: one(',"x":1e400'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "-1e400 in an ignored field", why: "out of range", header: one(',"x":-1e400'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "400-digit integer in an ignored field", why: "overflows f64: out of range", header: one(`,"x":${"9".repeat(400)}`), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "1.8e308 in an ignored field", why: "just over f64's max", header: one(',"x":1.8e308'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "1.7976931348623157e308 in an ignored field", why: "f64's max is fine", header: one(',"x":1.7976931348623157e308'), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "1e-400 in an ignored field", why: "underflow to 0 is fine", header: one(',"x":1e-400'), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "2^64 in an ignored field", why: "a big integer is a float there, which is fine", header: one(`,"x":${TWO_64}`), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "-1.5e3 in an ignored field", why: "any finite JSON number is fine where ignored", header: one(',"x":-1.5e3'), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "01 in an ignored field", why: "still JSON syntax", header: one(',"x":01'), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "lone minus in an ignored field", why: "invalid number", header: one(',"x":-'), data: 1, expect: "InvalidHeaderDeserialization" },

  // ── 5. tensor entries ──────────────────────────────────────────────────────────────────────────────────
  { name: "one F32 tensor", why: "the basic case", header: obj(["w", t("F32", [2, 2], [0, 16])]), data: 16, expect: "ok", tensors: [["w", "F32", [2, 2], [0, 16]]], metadata: null },
  { name: "tensor entry as a 3-element array", why: "serde structs also deserialize from sequences (JSON.parse-based readers miss this)", header: '{"x":["U8",[2],[0,2]]}', data: 2, expect: "ok", tensors: [["x", "U8", [2], [0, 2]]], metadata: null },
  { name: "tensor entry as a 2-element array", why: "invalid length 2", header: '{"x":["U8",[0]]}', expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry as a 4-element array", why: "invalid length 4", header: '{"x":["U8",[1],[0,1],1]}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry array in the wrong order", why: "fields are positional", header: '{"x":[[1],"U8",[0,1]]}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry empty array", why: "invalid length 0", header: '{"x":[]}', expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry null", why: "invalid type", header: '{"x":null}', expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry string", why: "invalid type", header: '{"x":"U8"}', expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry number", why: "invalid type", header: '{"x":5}', expect: "InvalidHeaderDeserialization" },
  { name: "tensor entry empty object", why: "missing field dtype", header: '{"x":{}}', expect: "InvalidHeaderDeserialization" },
  { name: "missing dtype", why: "missing field", header: '{"x":{"shape":[1],"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "missing shape", why: "missing field", header: '{"x":{"dtype":"U8","data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "missing data_offsets", why: "missing field", header: '{"x":{"dtype":"U8","shape":[1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate dtype field", why: "serde refuses a duplicate field (JSON.parse keeps the last)", header: '{"x":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate shape field", why: "duplicate field", header: '{"x":{"dtype":"U8","shape":[2],"shape":[1],"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate data_offsets field", why: "duplicate field", header: '{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,9],"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "fields in another order", why: "key order inside an entry is free", header: '{"x":{"data_offsets":[0,1],"shape":[1],"dtype":"U8"}}', data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "extra fields of every type", why: "no deny_unknown_fields: extra keys are ignored", header: one(',"a":"s","b":{"c":[1,2]},"d":null,"e":true,"f":-2.5'), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "extra field named like a prototype member", why: "ignored like any other", header: one(',"__proto__":{"dtype":"F64"},"constructor":1'), data: 1, expect: "ok", tensors: [U8_1], metadata: null },
  { name: "shape null", why: "invalid type", header: '{"x":{"dtype":"U8","shape":null,"data_offsets":[0,0]}}', expect: "InvalidHeaderDeserialization" },
  { name: "shape object", why: "invalid type: map", header: '{"x":{"dtype":"U8","shape":{"0":1},"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape number", why: "invalid type", header: '{"x":{"dtype":"U8","shape":1,"data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "shape string", why: "invalid type", header: '{"x":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets empty", why: "a tuple of size 2", header: num("0", ""), expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets of one", why: "a tuple of size 2", header: num("0", "0"), expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets of three", why: "invalid length 3", header: num("1", "0,1,1"), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets object", why: "a tuple is only a sequence", header: '{"x":{"dtype":"U8","shape":[1],"data_offsets":{"0":0,"1":1}}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets string", why: "invalid type", header: '{"x":{"dtype":"U8","shape":[1],"data_offsets":"0,1"}}', data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "data_offsets null", why: "invalid type", header: '{"x":{"dtype":"U8","shape":[1],"data_offsets":null}}', data: 1, expect: "InvalidHeaderDeserialization" },

  // ── 6. dtypes ──────────────────────────────────────────────────────────────────────────────────────────
  { name: "unknown dtype F128", why: "unknown variant", header: obj(["x", t("F128", [1], [0, 16])]), data: 16, expect: "InvalidHeaderDeserialization" },
  { name: "lower-case dtype", why: "variant names are case-sensitive", header: obj(["x", t("f32", [1], [0, 4])]), data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "empty dtype", why: "unknown variant", header: obj(["x", t("", [0], [0, 0])]), expect: "InvalidHeaderDeserialization" },
  { name: "dtype with a space", why: "no trimming", header: obj(["x", t("F32 ", [1], [0, 4])]), data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype F8_E4M3FN", why: "the torch name, not the format's", header: obj(["x", t("F8_E4M3FN", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype I4", why: "not a safetensors 0.8 dtype", header: obj(["x", t("I4", [2], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype __proto__", why: "a dtype table keyed by a plain object would find Object.prototype", header: obj(["x", t("__proto__", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype constructor", why: "prototype member, not a dtype", header: obj(["x", t("constructor", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype toString", why: "prototype member, not a dtype", header: obj(["x", t("toString", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype hasOwnProperty", why: "prototype member, not a dtype", header: obj(["x", t("hasOwnProperty", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "dtype number", why: "expected string or map", header: '{"x":{"dtype":17,"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype null", why: "expected string or map", header: '{"x":{"dtype":null,"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype array", why: "expected string or map", header: '{"x":{"dtype":["F32"],"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype as a one-key map {F32: null}", why: "serde's externally tagged enum form of a unit variant", header: '{"x":{"dtype":{"F32":null},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "ok", tensors: [["x", "F32", [1], [0, 4]]], metadata: null },
  { name: "dtype as {F32: {}}", why: "a unit variant's value must be null", header: '{"x":{"dtype":{"F32":{}},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype as {F32: 1}", why: "a unit variant's value must be null", header: '{"x":{"dtype":{"F32":1},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype as a two-key map", why: "map with a single key expected", header: '{"x":{"dtype":{"F32":null,"U8":null},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype as an empty map", why: "map with a single key expected", header: '{"x":{"dtype":{},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype as {unknown: null}", why: "unknown variant", header: '{"x":{"dtype":{"F128":null},"shape":[1],"data_offsets":[0,4]}}', data: 4, expect: "InvalidHeaderDeserialization" },
  { name: "dtype written with escapes", why: "\\u0046\\u0033\\u0032 is F32 after unescaping", header: String.raw`{"x":{"dtype":"\u0046\u0033\u0032","shape":[1],"data_offsets":[0,4]}}`, data: 4, expect: "ok", tensors: [["x", "F32", [1], [0, 4]]], metadata: null },
  ...allDtypes(),

  // ── 7. __metadata__ ────────────────────────────────────────────────────────────────────────────────────
  { name: "metadata only", why: "a metadata map and no tensors", header: '{"__metadata__":{"format":"pt"}}', expect: "ok", tensors: [], metadata: [["format", "pt"]] },
  { name: "metadata null", why: "Option: null is None", header: '{"__metadata__":null}', expect: "ok", tensors: [], metadata: null },
  { name: "metadata empty map", why: "Some(empty map)", header: '{"__metadata__":{}}', expect: "ok", tensors: [], metadata: [] },
  { name: "metadata after the tensors", why: "key order is free", header: `{"x":${t("U8", [1], [0, 1])},"__metadata__":{"a":"b"}}`, data: 1, expect: "ok", tensors: [U8_1], metadata: [["a", "b"]] },
  { name: "metadata with an empty key and value", why: "any strings", header: '{"__metadata__":{"":""}}', expect: "ok", tensors: [], metadata: [["", ""]] },
  { name: "metadata duplicate inner key", why: "HashMap: last wins", header: '{"__metadata__":{"k":"1","k":"2"}}', expect: "ok", tensors: [], metadata: [["k", "2"]] },
  { name: "metadata prototype-named keys", why: "ordinary keys; must not touch any prototype", header: '{"__metadata__":{"__proto__":"p","constructor":"c","toString":"t","hasOwnProperty":"h","valueOf":"v"}}', expect: "ok", tensors: [], metadata: [["__proto__", "p"], ["constructor", "c"], ["toString", "t"], ["hasOwnProperty", "h"], ["valueOf", "v"]] },
  { name: "metadata with __proto__ twice", why: "last wins, as for any key", header: '{"__metadata__":{"__proto__":"a","__proto__":"b"}}', expect: "ok", tensors: [], metadata: [["__proto__", "b"]] },
  { name: "metadata value number", why: "expected a string", header: '{"__metadata__":{"a":1}}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata value bool", why: "expected a string", header: '{"__metadata__":{"a":true}}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata value null", why: "expected a string", header: '{"__metadata__":{"a":null}}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata value array", why: "expected a string", header: '{"__metadata__":{"a":["b"]}}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata value object", why: "expected a string", header: '{"__metadata__":{"a":{"b":"c"}}}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata as a string", why: "expected a map", header: '{"__metadata__":"x"}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata as an array", why: "expected a map", header: '{"__metadata__":[]}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata as an array of pairs", why: "a map is only an object", header: '{"__metadata__":[["a","b"]]}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata as a number", why: "expected a map", header: '{"__metadata__":0}', expect: "InvalidHeaderDeserialization" },
  { name: "metadata shaped like a tensor", why: "__metadata__ is never a tensor: shape is not a string", header: `{"__metadata__":${t("U8", [1], [0, 1])}}`, data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "metadata with a dtype key", why: "just a metadata entry", header: '{"__metadata__":{"dtype":"F32"}}', expect: "ok", tensors: [], metadata: [["dtype", "F32"]] },
  { name: "duplicate __metadata__", why: "duplicate field (JSON.parse keeps the last)", header: '{"__metadata__":{"a":"b"},"__metadata__":{"a":"b"}}', expect: "InvalidHeaderDeserialization" },
  { name: "duplicate __metadata__, first null", why: "still a duplicate field", header: '{"__metadata__":null,"__metadata__":{}}', expect: "InvalidHeaderDeserialization" },
  { name: "__metadata__ written with an escape", why: "the key is compared after unescaping", header: String.raw`{"__metadata\u005f_":{"a":"b"}}`, expect: "ok", tensors: [], metadata: [["a", "b"]] },
  { name: "escaped __metadata__ with a number value", why: "it is the metadata, so values must be strings", header: String.raw`{"__metadata\u005f_":{"a":1}}`, expect: "InvalidHeaderDeserialization" },
  { name: "escaped and plain __metadata__", why: "duplicate field", header: String.raw`{"__metadata__":{},"__metadata\u005f_":{}}`, expect: "InvalidHeaderDeserialization" },
  { name: "__METADATA__ in capitals", why: "a tensor entry: missing field dtype", header: '{"__METADATA__":{"a":"b"}}', expect: "InvalidHeaderDeserialization" },
  { name: "__metadata__ with a trailing space", why: "a tensor entry: missing field dtype", header: '{"__metadata__ ":{"a":"b"}}', expect: "InvalidHeaderDeserialization" },

  // ── 8. names ───────────────────────────────────────────────────────────────────────────────────────────
  {
    name: "prototype-named tensors",
    why: "ordinary names everywhere (a plain object would drop or corrupt them)",
    header: obj(
      ["__proto__", t("U8", [1], [0, 1])], ["constructor", t("U8", [1], [1, 2])], ["toString", t("U8", [1], [2, 3])],
      ["hasOwnProperty", t("U8", [1], [3, 4])], ["valueOf", t("U8", [1], [4, 5])], ["__defineGetter__", t("U8", [1], [5, 6])],
      ["prototype", t("U8", [1], [6, 7])], ["length", t("U8", [1], [7, 8])],
    ),
    data: 8,
    expect: "ok",
    tensors: [
      ["__proto__", "U8", [1], [0, 1]], ["constructor", "U8", [1], [1, 2]], ["toString", "U8", [1], [2, 3]],
      ["hasOwnProperty", "U8", [1], [3, 4]], ["valueOf", "U8", [1], [4, 5]], ["__defineGetter__", "U8", [1], [5, 6]],
      ["prototype", "U8", [1], [6, 7]], ["length", "U8", [1], [7, 8]],
    ],
    metadata: null,
  },
  { name: "only a __proto__ tensor", why: "a JSON.parse + plain-object reader sees no tensors here", header: obj(["__proto__", t("F32", [1], [0, 4])]), data: 4, expect: "ok", tensors: [["__proto__", "F32", [1], [0, 4]]], metadata: null },
  { name: "__proto__ tensor with bad offsets", why: "validated like any tensor", header: obj(["__proto__", t("F32", [1], [0, 8])]), data: 8, expect: "TensorInvalidInfo" },
  { name: "__proto__ tensor with an unknown dtype", why: "deserialized like any tensor", header: obj(["__proto__", t("X", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "__proto__ tensor given twice", why: "last wins, as for any name", header: obj(["__proto__", t("U8", [2], [0, 2])], ["__proto__", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["__proto__", "U8", [1], [0, 1]]], metadata: null },
  { name: "1,000 tensors listed in reverse offset order", why: "sorted by offsets before the walk", header: `{${Array.from({ length: 1000 }, (_, i) => 999 - i).map((i) => `"t${i}":${t("U16", [1], [2 * i, 2 * i + 2])}`).join(",")}}`, data: 2000, expect: "ok", tensors: Array.from({ length: 1000 }, (_, i): ExpectedTensor => [`t${i}`, "U16", [1], [2 * i, 2 * i + 2]]), metadata: null },
  { name: "empty name", why: "\"\" is a valid key", header: obj(["", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["", "U8", [1], [0, 1]]], metadata: null },
  { name: "name __metadata (one underscore short)", why: "an ordinary tensor", header: obj(["__metadata", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["__metadata", "U8", [1], [0, 1]]], metadata: null },
  { name: "names that are numbers", why: "integer-like keys: object key order would put them first", header: obj(["10", t("U8", [1], [0, 1])], ["2", t("U8", [1], [1, 2])], ["b", t("U8", [1], [2, 3])]), data: 3, expect: "ok", tensors: [["10", "U8", [1], [0, 1]], ["2", "U8", [1], [1, 2]], ["b", "U8", [1], [2, 3]]], metadata: null },
  { name: "duplicate tensor key: last wins", why: "HashMap insert: the first entry (which would be invalid) is replaced", header: obj(["a", t("U8", [1], [0, 9])], ["a", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["a", "U8", [1], [0, 1]]], metadata: null },
  { name: "duplicate tensor key written with an escape", why: "\"a\" and \"\\u0061\" are the same key; last wins", header: rawObj(["a", t("U8", [2], [0, 2])], ["\\u0061", t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["a", "U8", [1], [0, 1]]], metadata: null },
  { name: "duplicate tensor key, first not an entry", why: "every occurrence is deserialized before the map keeps the last", header: obj(["a", "5"], ["a", t("U8", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate tensor key, last not an entry", why: "invalid type", header: obj(["a", t("U8", [1], [0, 1])], ["a", "5"]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate tensor key, first with an unknown dtype", why: "unknown variant, even though overwritten", header: obj(["a", t("X", [1], [0, 1])], ["a", t("U8", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate tensor key, first with a float", why: "invalid type, even though overwritten", header: obj(["a", t("U8", ["1.0"], [0, 1])], ["a", t("U8", [1], [0, 1])]), data: 1, expect: "InvalidHeaderDeserialization" },
  { name: "long name", why: "no length limit on names", header: obj(["n".repeat(10_000), t("U8", [1], [0, 1])]), data: 1, expect: "ok", tensors: [["n".repeat(10_000), "U8", [1], [0, 1]]], metadata: null },

  // ── 9. offsets (sorted by (start, end), then walked) ───────────────────────────────────────────────────
  { name: "header order differs from offset order", why: "tensors are sorted by offsets before the walk", header: obj(["b", t("U8", [2], [3, 5])], ["a", t("U8", [3], [0, 3])]), data: 5, expect: "ok", tensors: [["a", "U8", [3], [0, 3]], ["b", "U8", [2], [3, 5]]], metadata: null },
  { name: "first start is not 0", why: "s != start (0)", header: obj(["x", t("U8", [1], [1, 2])]), data: 2, expect: "InvalidOffset" },
  { name: "gap between tensors", why: "s != previous end", header: obj(["a", t("U8", [1], [0, 1])], ["b", t("U8", [1], [2, 3])]), data: 3, expect: "InvalidOffset" },
  { name: "overlapping tensors", why: "s != previous end", header: obj(["a", t("U8", [2], [0, 2])], ["b", t("U8", [2], [1, 3])]), data: 3, expect: "InvalidOffset" },
  { name: "two tensors on the same range", why: "the second one starts before the first one's end", header: obj(["a", t("F32", [1], [0, 4])], ["b", t("I32", [1], [0, 4])]), data: 4, expect: "InvalidOffset" },
  { name: "end before start", why: "e < s (a signed subtraction would report TensorInvalidInfo)", header: obj(["a", t("U8", [4], [0, 4])], ["b", t("U8", [0], [4, 2])]), data: 4, expect: "InvalidOffset" },
  { name: "lone tensor with end before start", why: "sorted first, but s (3) != 0", header: obj(["a", t("U8", [0], [3, 1])]), data: 3, expect: "InvalidOffset" },
  { name: "zero-size tensor away from 0", why: "(1, 1) alone: s != 0", header: obj(["z", t("U8", [0], [1, 1])]), data: 1, expect: "InvalidOffset" },
  { name: "zero-size tensor past the end of the data", why: "(8, 8) after (0, 4): s != 4", header: obj(["a", t("F32", [1], [0, 4])], ["z", t("F32", [0], [8, 8])]), data: 4, expect: "InvalidOffset" },
  { name: "zero-size tensor in the middle", why: "(4, 4) between (0, 4) and (4, 8)", header: obj(["a", t("F32", [1], [0, 4])], ["z", t("F32", [0, 3], [4, 4])], ["b", t("F32", [1], [4, 8])]), data: 8, expect: "ok", tensors: [["a", "F32", [1], [0, 4]], ["z", "F32", [0, 3], [4, 4]], ["b", "F32", [1], [4, 8]]], metadata: null },
  { name: "zero-size tensors at 0 and at the end", why: "(0, 0) sorts first, (4, 4) last", header: obj(["b", t("F32", [1], [0, 4])], ["z1", t("F64", [0], [0, 0])], ["z2", t("U8", [5, 0], [4, 4])]), data: 4, expect: "ok", tensors: [["b", "F32", [1], [0, 4]], ["z1", "F64", [0], [0, 0]], ["z2", "U8", [5, 0], [4, 4]]], metadata: null },
  { name: "two zero-size tensors on the same spot", why: "(0, 0) twice is still contiguous", header: obj(["z1", t("U8", [0], [0, 0])], ["z2", t("I64", [0], [0, 0])]), expect: "ok", tensors: [["z1", "U8", [0], [0, 0]], ["z2", "I64", [0], [0, 0]]], metadata: null },
  { name: "only a zero-size tensor", why: "no data at all", header: obj(["z", t("F32", [0], [0, 0])]), expect: "ok", tensors: [["z", "F32", [0], [0, 0]]], metadata: null },
  { name: "unaligned F32", why: "offsets need no alignment: F32 at data offset 1", header: obj(["a", t("U8", [1], [0, 1])], ["b", t("F32", [2], [1, 9])]), data: 9, expect: "ok", tensors: [["a", "U8", [1], [0, 1]], ["b", "F32", [2], [1, 9]]], metadata: null },
  { name: "unaligned F64 after an odd header", why: "8 + N odd and offset 3", header: obj(["a", t("U8", [3], [0, 3])], ["b", t("F64", [1], [3, 11])]) + " ", data: 11, expect: "ok", tensors: [["a", "U8", [3], [0, 3]], ["b", "F64", [1], [3, 11]]], metadata: null },

  // ── 10. sizes ──────────────────────────────────────────────────────────────────────────────────────────
  { name: "scalar", why: "shape [] holds one element", header: obj(["s", t("F64", [], [0, 8])]), data: 8, expect: "ok", tensors: [["s", "F64", [], [0, 8]]], metadata: null },
  { name: "scalar with no bytes", why: "[] is one element, not zero", header: obj(["s", t("F32", [], [0, 0])]), expect: "TensorInvalidInfo" },
  { name: "too few bytes", why: "e - s != size", header: obj(["x", t("F32", [2], [0, 7])]), data: 7, expect: "TensorInvalidInfo" },
  { name: "too many bytes", why: "e - s != size", header: obj(["x", t("F32", [2], [0, 9])]), data: 9, expect: "TensorInvalidInfo" },
  { name: "zero-size shape with bytes", why: "[0, 3] holds nothing", header: obj(["x", t("F32", [0, 3], [0, 4])]), data: 4, expect: "TensorInvalidInfo" },
  { name: "F16 [2, 3] with 10 bytes", why: "needs 12", header: obj(["x", t("F16", [2, 3], [0, 10])]), data: 10, expect: "TensorInvalidInfo" },
  { name: "shape [2^32, 2^32] U8", why: "element count overflows u64 (doubles would not notice)", header: num("4294967296,4294967296", "0,0"), expect: "ValidationOverflow" },
  { name: "shape [2^32, 2^32, 0]", why: "the product is checked left to right: it overflows before reaching 0", header: num("4294967296,4294967296,0", "0,0"), expect: "ValidationOverflow" },
  { name: "shape [0, 2^32, 2^32]", why: "0 first: the product stays 0", header: num("0,4294967296,4294967296", "0,0"), expect: "ok", tensors: [["x", "U8", [0, 4294967296, 4294967296], [0, 0]]], metadata: null },
  { name: "shape [0, 2^53 + 1]", why: "accepted; the dimension is not representable as a double", header: num("0,9007199254740993", "0,0"), expect: "ok", tensors: [["x", "U8", null, [0, 0]]], metadata: null },
  { name: "shape [2^61] U8", why: "bits = 2^64 overflows (bytes would fit)", header: num("2305843009213693952", "0,0"), expect: "ValidationOverflow" },
  { name: "shape [2^60] U8", why: "bits = 2^63 fits; 2^60 bytes != 0", header: num("1152921504606846976", "0,0"), expect: "TensorInvalidInfo" },
  { name: "shape [2^58] F64", why: "bits = 2^64 overflows", header: num("288230376151711744", "0,0", "F64"), expect: "ValidationOverflow" },
  { name: "shape [2^57] F64", why: "bits = 2^63 fits; size mismatch", header: num("144115188075855872", "0,0", "F64"), expect: "TensorInvalidInfo" },
  { name: "shape [2^62] F4", why: "bits = 2^64 overflows", header: num("4611686018427387904", "0,0", "F4"), expect: "ValidationOverflow" },
  { name: "shape [2^53 + 1] U8 with end 2^53", why: "exact u64: 2^53 + 1 bytes != 2^53 (doubles round both to 2^53)", header: num("9007199254740993", "0,9007199254740992"), data: 1, expect: "TensorInvalidInfo" },
  { name: "offsets above 2^53 that only doubles see as contiguous", why: "b starts at 2^53 but a ends at 2^53 + 1", header: `{"a":${t("U8", ["9007199254740993"], [0, "9007199254740993"])},"b":${t("U8", [0], ["9007199254740992", "9007199254740992"])}}`, data: 1, expect: "InvalidOffset" },
  { name: "huge consistent tensor", why: "valid sizes, but the file is far shorter", header: num("9007199254740993", "0,9007199254740993"), data: 1, expect: "MetadataIncompleteBuffer" },
  { name: "end 2^64 - 1 with matching U8 shape", why: "bits overflow", header: num(U64_MAX, `0,${U64_MAX}`), data: 1, expect: "ValidationOverflow" },

  // ── 11. sub-byte dtypes ────────────────────────────────────────────────────────────────────────────────
  { name: "F4 [2]", why: "two nibbles in one byte", header: obj(["x", t("F4", [2], [0, 1])]), data: 1, expect: "ok", tensors: [["x", "F4", [2], [0, 1]]], metadata: null },
  { name: "F4 [3]", why: "12 bits: not whole bytes", header: obj(["x", t("F4", [3], [0, 2])]), data: 2, expect: "MisalignedSlice" },
  { name: "F4 [1]", why: "4 bits", header: obj(["x", t("F4", [1], [0, 1])]), data: 1, expect: "MisalignedSlice" },
  { name: "F4 scalar", why: "one element of 4 bits", header: obj(["x", t("F4", [], [0, 1])]), data: 1, expect: "MisalignedSlice" },
  { name: "F4 [3, 3]", why: "9 elements", header: obj(["x", t("F4", [3, 3], [0, 5])]), data: 5, expect: "MisalignedSlice" },
  { name: "F4 [2, 3]", why: "6 elements, 3 bytes", header: obj(["x", t("F4", [2, 3], [0, 3])]), data: 3, expect: "ok", tensors: [["x", "F4", [2, 3], [0, 3]]], metadata: null },
  { name: "F4 [0]", why: "nothing to misalign", header: obj(["x", t("F4", [0], [0, 0])]), expect: "ok", tensors: [["x", "F4", [0], [0, 0]]], metadata: null },
  { name: "F4 [4] with 1 byte", why: "whole bytes, wrong size", header: obj(["x", t("F4", [4], [0, 1])]), data: 1, expect: "TensorInvalidInfo" },
  { name: "F4 [2^61 + 1]", why: "exact: odd element count (a double rounds it to even)", header: num("2305843009213693953", "0,0", "F4"), expect: "MisalignedSlice" },
  { name: "F6_E2M3 [4]", why: "24 bits = 3 bytes", header: obj(["x", t("F6_E2M3", [4], [0, 3])]), data: 3, expect: "ok", tensors: [["x", "F6_E2M3", [4], [0, 3]]], metadata: null },
  { name: "F6_E3M2 [8]", why: "48 bits = 6 bytes", header: obj(["x", t("F6_E3M2", [2, 4], [0, 6])]), data: 6, expect: "ok", tensors: [["x", "F6_E3M2", [2, 4], [0, 6]]], metadata: null },
  { name: "F6_E2M3 [2]", why: "12 bits", header: obj(["x", t("F6_E2M3", [2], [0, 2])]), data: 2, expect: "MisalignedSlice" },
  { name: "F6_E3M2 [6]", why: "36 bits", header: obj(["x", t("F6_E3M2", [6], [0, 5])]), data: 5, expect: "MisalignedSlice" },
  { name: "F6_E3M2 [4] with 4 bytes", why: "whole bytes, wrong size", header: obj(["x", t("F6_E3M2", [4], [0, 4])]), data: 4, expect: "TensorInvalidInfo" },

  // ── 12. the end of the file ────────────────────────────────────────────────────────────────────────────
  { name: "one trailing byte", why: "last end + 8 + N != len", header: obj(["x", t("U8", [2], [0, 2])]), data: 3, expect: "MetadataIncompleteBuffer" },
  { name: "one byte missing", why: "last end + 8 + N != len", header: obj(["x", t("U8", [2], [0, 2])]), data: 1, expect: "MetadataIncompleteBuffer" },
  { name: "no data at all", why: "truncated right after the header", header: obj(["x", t("F32", [4], [0, 16])]), expect: "MetadataIncompleteBuffer" },
  { name: "empty header with trailing data", why: "no tensors: data must be empty", header: "{}", data: 1, expect: "MetadataIncompleteBuffer" },
  { name: "metadata only with trailing data", why: "no tensors: data must be empty", header: '{"__metadata__":{"a":"b"}}', data: 4, expect: "MetadataIncompleteBuffer" },

  // ── 13. which rule wins ────────────────────────────────────────────────────────────────────────────────
  { name: "JSON error after an offset error", why: "the whole JSON is deserialized before validation", header: obj(["a", t("U8", [1], [5, 6])], ["b", t("X", [1], [0, 1])]), data: 6, expect: "InvalidHeaderDeserialization" },
  { name: "duplicate field after a size error", why: "deserialization first", header: obj(["a", t("U8", [9], [0, 1])], ["b", '{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[1,2]}']), data: 2, expect: "InvalidHeaderDeserialization" },
  { name: "size error before an offset error", why: "the first tensor in offset order fails first", header: obj(["a", t("U8", [2], [0, 1])], ["b", t("U8", [1], [5, 6])]), data: 6, expect: "TensorInvalidInfo" },
  { name: "offset error before a size error", why: "the first tensor in offset order is checked first", header: obj(["b", t("U8", [9], [4, 5])], ["a", t("U8", [1], [1, 4])]), data: 5, expect: "InvalidOffset" },
  { name: "offset error before an overflow", why: "the offset check of a tensor comes before its size", header: obj(["a", t("U8", ["4294967296", "4294967296"], [1, 1])]), data: 1, expect: "InvalidOffset" },
  { name: "overflow before a later offset error", why: "tensor order by offsets", header: obj(["a", t("U8", ["4294967296", "4294967296"], [0, 0])], ["b", t("U8", [1], [3, 4])]), data: 4, expect: "ValidationOverflow" },
  { name: "misaligned before a size mismatch", why: "the bit check comes before the byte count", header: obj(["a", t("F4", [3], [0, 7])]), data: 7, expect: "MisalignedSlice" },
  { name: "misaligned tensor sorted after a bad size", why: "tensor order by offsets", header: obj(["b", t("F4", [3], [1, 3])], ["a", t("U8", [2], [0, 1])]), data: 3, expect: "TensorInvalidInfo" },
  { name: "size error before trailing bytes", why: "validate() runs before the length check", header: obj(["a", t("U8", [2], [0, 1])]), data: 10, expect: "TensorInvalidInfo" },
  { name: "offset error in a file that is too short", why: "validate() runs before the length check", header: obj(["a", t("U8", [1], [2, 3])]), expect: "InvalidOffset" },
  { name: "header error wins over invalid UTF-8 in a later region", why: "InvalidHeaderLength before UTF-8", header: bytes("{}", [0xff]), n: 4n, expect: "InvalidHeaderLength" },
  { name: "InvalidHeader wins over a JSON error", why: "UTF-8 before JSON", header: bytes('{"a":', [0xc0, 0x80], "}"), expect: "InvalidHeader" },
];

/** One minimal valid file per dtype, with the reference's bit widths. */
function allDtypes(): Vector[] {
  const bits: Array<[string, number]> = [
    ["BOOL", 8], ["F4", 4], ["F6_E2M3", 6], ["F6_E3M2", 6], ["U8", 8], ["I8", 8], ["F8_E5M2", 8], ["F8_E4M3", 8],
    ["F8_E8M0", 8], ["F8_E4M3FNUZ", 8], ["F8_E5M2FNUZ", 8], ["I16", 16], ["U16", 16], ["F16", 16], ["BF16", 16],
    ["I32", 32], ["U32", 32], ["F32", 32], ["C64", 64], ["F64", 64], ["I64", 64], ["U64", 64],
  ];
  return bits.map(([dtype, b]) => {
    const bytesLen = b; // 8 elements of b bits
    return {
      name: `dtype ${dtype} [8]`,
      why: `${dtype} is ${b} bits per element`,
      header: obj(["x", t(dtype, [2, 4], [0, bytesLen])]),
      data: bytesLen,
      expect: "ok" as const,
      tensors: [["x", dtype, [2, 4], [0, bytesLen]] as ExpectedTensor],
      metadata: null,
    };
  });
}
