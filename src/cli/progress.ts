/**
 * A byte-counting progress bar on stderr. On a terminal it redraws in place (at most ten times a second);
 * piped or in CI it stays silent until `finish`, which prints one summary line either way.
 */
import type { Output } from "./command.ts";
import { formatBytes, formatDuration, formatRate } from "./format.ts";

const REDRAW_MS = 100;

export class Progress {
  readonly #out: Output;
  readonly #label: string;
  readonly #total: number;
  readonly #started: number;
  #done = 0;
  #drawnAt = -Infinity;

  /**
   * @example
   * ```ts
   * const bar = new Progress(process.stderr, "load", file.totalBytes);
   * for (const chunk of chunks) bar.add(chunk.byteLength);
   * const seconds = bar.finish();
   * ```
   *
   * `started` (a `performance.now()`) counts time from before the bar could exist, e.g. the open that
   * told it the total.
   */
  constructor(out: Output, label: string, totalBytes: number, started = performance.now()) {
    this.#out = out;
    this.#label = label;
    this.#total = totalBytes;
    this.#started = started;
  }

  /** Seconds since `started`. */
  get elapsed(): number {
    return (performance.now() - this.#started) / 1000;
  }

  /** Bytes counted so far. */
  get done(): number {
    return this.#done;
  }

  /** Counts `bytes` more as done and redraws if a terminal is watching and it is time. */
  add(bytes: number): void {
    this.#done += bytes;
    if (!this.#out.isTTY) return;
    const now = performance.now();
    if (now - this.#drawnAt < REDRAW_MS) return;
    this.#drawnAt = now;
    this.#out.write(`\r${this.#line()}\x1b[K`);
  }

  /** Prints the final line (replacing the bar on a terminal) and returns the elapsed seconds. */
  finish(): number {
    const seconds = this.elapsed;
    const summary = `${this.#label}: ${formatBytes(this.#done)} in ${formatDuration(seconds)} (${formatRate(this.#done, seconds)})`;
    this.#out.write(this.#out.isTTY ? `\r${summary}\x1b[K\n` : `${summary}\n`);
    return seconds;
  }

  #line(): string {
    const seconds = this.elapsed;
    const fraction = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 1;
    const rate = seconds > 0 ? this.#done / seconds : 0;
    const eta = rate > 0 ? formatDuration((this.#total - this.#done) / rate) : "?";
    const text = `${formatBytes(this.#done)}/${formatBytes(this.#total)} ${formatRate(this.#done, seconds)} ETA ${eta}`;
    const head = `${this.#label} ${String(Math.floor(fraction * 100)).padStart(3)}% `;
    const width = Math.max(10, Math.min(40, (this.#out.columns || 80) - head.length - text.length - 4));
    const filled = Math.round(fraction * width);
    return `${head}[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${text}`;
  }
}
