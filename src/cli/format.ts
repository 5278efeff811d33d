/** Human-readable numbers and plain-text tables for the CLI. */

const SIZE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/**
 * Bytes in decimal units (as disks and `"5GB"` shard sizes count them), three significant digits.
 *
 * @example
 * ```ts
 * formatBytes(497_759_232); // "498 MB"
 * formatBytes(1536); // "1.54 kB"
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 999.5 && unit < SIZE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  // Past the largest unit toPrecision would switch to exponent notation.
  return `${Math.abs(value) >= 1000 ? Math.round(value) : value.toPrecision(3)} ${SIZE_UNITS[unit]}`;
}

/**
 * A count with thousands separators.
 *
 * @example
 * ```ts
 * formatCount(124439808); // "124,439,808"
 * ```
 */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * `noun` for one, `nouns` for any other count.
 *
 * @example
 * ```ts
 * `${n} ${plural(n, "tensor")}`; // "1 tensor", "3 tensors"
 * ```
 */
export function plural(n: number, noun: string): string {
  return n === 1 ? noun : `${noun}s`;
}

/**
 * Throughput in decimal units per second, three digits (small files load at kB/s, not "0.00 GB/s"), or
 * "-" when no time has passed.
 *
 * @example
 * ```ts
 * formatRate(2e9, 0.5); // "4.00 GB/s"
 * formatRate(84, 0.005); // "16.8 kB/s"
 * ```
 */
export function formatRate(bytes: number, seconds: number): string {
  return seconds > 0 ? `${formatBytes(Math.round(bytes / seconds))}/s` : "-";
}

/**
 * Seconds as `4.2 ms`, `0.42 s`, `12.3 s` or `4m05s`.
 *
 * @example
 * ```ts
 * formatDuration(245); // "4m05s"
 * ```
 */
export function formatDuration(seconds: number): string {
  if (seconds < 0.1) return `${(seconds * 1000).toFixed(1)} ms`;
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.floor(seconds - m * 60)).padStart(2, "0")}s`;
}

/**
 * `text` if at most `max` characters (code points), else its start and how long it was.
 *
 * @example
 * ```ts
 * shorten("x".repeat(5000), 20); // "xxxxxxxxxxxxxxxxxxxx… (5,000 characters)"
 * ```
 */
export function shorten(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max).join("")}… (${formatCount(chars.length)} characters)`;
}

/**
 * Left-aligned text columns; columns listed in `right` are right-aligned (numbers).
 *
 * @example
 * ```ts
 * table([["name", "size"], ["wte", "154 MB"]], [1]);
 * // "name    size\nwte   154 MB"
 * ```
 */
export function table(rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (right.includes(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/**
 * Characters that could drive or mislead a terminal: C0 and C1 controls (cursor moves, colours, a newline that
 * cuts a line), DEL, the line and paragraph separators, and the bidirectional marks, embeddings, overrides and
 * isolates (which make text read in another order than it is stored).
 */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same less C0, which JSON escapes itself (and whose newlines lay a JSON document out). */
const UNPRINTABLE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const escape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * Text from a file or the command line, safe to print: characters that could move the cursor, recolour the
 * terminal, cut the line or reorder the text are shown as `\uXXXX` escapes.
 *
 * @example
 * ```ts
 * printable("a\u001b[2Jb"); // "a\\u001b[2Jb"
 * ```
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escape);
}

/**
 * `JSON.stringify(value, null, 2)`, safe to print: JSON escapes C0 controls itself; the others
 * {@link printable} escapes can stand only inside strings, where `\uXXXX` is the same JSON value.
 *
 * @example
 * ```ts
 * printableJson({ name: "a\u202eb" }); // '{\n  "name": "a\\u202eb"\n}'
 * ```
 */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(UNPRINTABLE_IN_JSON, escape);
}
