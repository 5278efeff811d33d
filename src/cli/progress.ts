/**
 * A byte-counting progress bar on stderr. On a terminal it redraws in place (at most ten times a second),
 * never wider than the terminal, and `finish` erases it: the command's own summary line on stdout says the
 * result once. Piped or in CI it writes nothing at all.
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

  /** Erases the bar, if one was drawn, and returns the elapsed seconds. */
  finish(): number {
    if (this.#drawnAt > -Infinity) this.#out.write("\r\x1b[K");
    return this.elapsed;
  }

  /**
   * The bar in at most `columns - 1` characters (a character in the last column makes some terminals wrap,
   * and a wrapped line is not redrawn by `\r`): the bar shrinks, then goes, then the ETA and rate go.
   */
  #line(): string {
    const seconds = this.elapsed;
    const fraction = this.#total > 0 ? Math.min(1, this.#done / this.#total) : 1;
    const rate = seconds > 0 ? this.#done / seconds : 0;
    const eta = rate > 0 ? formatDuration((this.#total - this.#done) / rate) : "?";
    const room = Math.max(1, (this.#out.columns || 80) - 1);
    const head = `${this.#label} ${String(Math.floor(fraction * 100)).padStart(3)}%`;
    const sizes = `${formatBytes(this.#done)}/${formatBytes(this.#total)}`;
    for (const text of [`${sizes} ${formatRate(this.#done, seconds)} ETA ${eta}`, sizes]) {
      const width = Math.min(40, room - head.length - text.length - 4);
      if (width >= 10) {
        const filled = Math.round(fraction * width);
        return `${head} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${text}`;
      }
      if (head.length + 1 + text.length <= room) return `${head} ${text}`;
    }
    return head.slice(0, room);
  }
}
