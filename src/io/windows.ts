/**
 * Pure planning for the mmap backend: which window of the file holds which range. A window is one `mmap` and
 * one ArrayBuffer, no larger than the runtime allows (Bun: 4 GiB). A file that fits is one window. A larger one
 * gets windows on a grid of half a window, so any range up to half a window lies inside one of them; a longer
 * range gets a window of its own, starting at its page; one longer than a window fits none and is read in
 * pieces. No I/O here, so every rule is testable anywhere (files of terabytes included).
 */

/** How one file is cut into windows. Every length is in bytes; `windowMax` and `step` are whole pages. */
export interface WindowGrid {
  readonly size: number;
  readonly page: number;
  /** The largest window. */
  readonly windowMax: number;
  /** The grid windows start on: half a window. */
  readonly step: number;
}

/** A window: the file bytes `[start, end)`. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

/** A piece of a range, inside one window. */
export interface Piece {
  readonly window: Span;
  readonly offset: number;
  readonly length: number;
}

/**
 * The grid for a file of `size` bytes when one view may span `maxView` bytes (`windowBytes` smaller only to
 * exercise windows).
 *
 * @example
 * ```ts
 * windowGrid(5 * 2 ** 30, 4096, 2 ** 32); // { size: 5368709120, page: 4096, windowMax: 4294967296, step: 2147483648 }
 * ```
 */
export function windowGrid(size: number, page: number, maxView: number, windowBytes = maxView): WindowGrid {
  // Two pages at least: with one, half a window would be no page at all, and no piece could advance.
  const windowMax = Math.max(2 * page, floorTo(Math.min(windowBytes, maxView), page));
  return { size, page, windowMax, step: floorTo(windowMax / 2, page) };
}

/** Whether the whole file is one window. */
export function isWhole(grid: WindowGrid): boolean {
  return grid.size <= grid.windowMax;
}

/**
 * The window holding `[offset, offset + length)`, or null when no window can (the range is longer than one):
 * the whole file when it fits; else the grid window starting at or before `offset` when the range is at most
 * `windowMax − step` long; else a window of the range's own, from its first page.
 *
 * @example
 * ```ts
 * const grid = windowGrid(10 * 4096, 4096, 4 * 4096);
 * windowFor(grid, 5000, 100); // { start: 0, end: 16384 }
 * windowFor(grid, 9000, 3 * 4096); // { start: 8192, end: 21288 }: longer than half a window
 * windowFor(grid, 0, 5 * 4096); // null
 * ```
 */
export function windowFor(grid: WindowGrid, offset: number, length: number): Span | null {
  const { size, page, windowMax, step } = grid;
  if (size <= windowMax) return { start: 0, end: size };
  if (length <= windowMax - step) {
    const start = floorTo(offset, step);
    return { start, end: Math.min(start + windowMax, size) };
  }
  const start = floorTo(offset, page);
  return offset + length - start <= windowMax ? { start, end: offset + length } : null;
}

/**
 * The longest piece {@link pieces} cuts, so that every piece lies in a grid window (or the whole file).
 *
 * @example
 * ```ts
 * pieceLimit(windowGrid(10 * 4096, 4096, 4 * 4096)); // 8192
 * ```
 */
export function pieceLimit(grid: WindowGrid): number {
  return isWhole(grid) ? grid.windowMax : grid.windowMax - grid.step;
}

/**
 * `[offset, offset + length)` in pieces of at most `most` bytes (and at most {@link pieceLimit}), in order, each
 * with the window that holds it.
 *
 * @example
 * ```ts
 * [...pieces(windowGrid(10 * 4096, 4096, 4 * 4096), 4000, 9000, 1 << 20)].map((p) => [p.window.start, p.offset, p.length]);
 * // [[0, 4000, 8192], [8192, 12192, 808]]
 * ```
 */
export function* pieces(grid: WindowGrid, offset: number, length: number, most: number): Generator<Piece> {
  const limit = Math.max(1, Math.min(most, pieceLimit(grid)));
  for (let at = offset, end = offset + length; at < end; ) {
    const n = Math.min(limit, end - at);
    yield { window: windowFor(grid, at, n)!, offset: at, length: n };
    at += n;
  }
}

/**
 * The page-aligned part of a window that covers a piece (what `madvise` takes): its offset from the window's
 * start and its length.
 *
 * @example
 * ```ts
 * pageSpan(4096, { window: { start: 8192, end: 16384 }, offset: 9000, length: 100 }); // { from: 0, length: 908 }
 * ```
 */
export function pageSpan(page: number, piece: Piece): { from: number; length: number } {
  const inWindow = piece.offset - piece.window.start;
  const from = floorTo(inWindow, page);
  return { from, length: inWindow + piece.length - from };
}

function floorTo(n: number, unit: number): number {
  return n - (n % unit);
}
