import { describe, expect, test } from "vitest";
import { isWhole, pageSpan, pieceLimit, pieces, windowFor, windowGrid, type Span, type WindowGrid } from "../../src/io/windows.ts";

const GiB = 2 ** 30;
const PAGE = 4096;

/**
 * Replays reads as the mmap source serves them: every range in pieces, each piece from the window the plan
 * names, mapped once and kept by its span. Checks that every byte of every range comes from a window that holds
 * it, at most `windowMax` long, on a page (and, for grid windows, on the half-window grid); returns the windows.
 */
function replay(grid: WindowGrid, ranges: Array<[offset: number, length: number]>, most = grid.windowMax): Map<string, Span> {
  const mapped = new Map<string, Span>();
  const wrong: string[] = [];
  const want = (ok: boolean, what: string) => void (ok || wrong.push(what));
  for (const [offset, length] of ranges) {
    let next = offset;
    for (const p of pieces(grid, offset, length, most)) {
      const w = p.window;
      const at = `piece ${p.offset}+${p.length} of ${offset}+${length} in ${w.start}..${w.end}`;
      want(p.offset === next, `${at}: pieces tile the range in order`);
      want(p.length > 0 && p.length <= Math.min(most, pieceLimit(grid)), `${at}: piece length`);
      want(w.start % grid.page === 0 && w.start <= p.offset && p.offset + p.length <= w.end, `${at}: the window holds the piece`);
      want(w.end <= grid.size && w.end - w.start <= grid.windowMax, `${at}: the window fits the file and one view`);
      want(isWhole(grid) || w.start % grid.step === 0, `${at}: pieces use grid windows`);
      const span = pageSpan(grid.page, p);
      want(span.from % grid.page === 0 && w.start + span.from + span.length === p.offset + p.length, `${at}: page span`);
      mapped.set(`${w.start}+${w.end}`, w);
      next += p.length;
    }
    want(next === offset + length, `${offset}+${length}: pieces cover the range`);
  }
  expect(wrong.slice(0, 5)).toEqual([]);
  return mapped;
}

describe("windowGrid", () => {
  test("windows are whole pages, at most one view, on a grid of half a window", () => {
    expect(windowGrid(5 * GiB, PAGE, 2 ** 32)).toEqual({ size: 5 * GiB, page: PAGE, windowMax: 2 ** 32, step: 2 ** 31 });
    // A requested window below two pages is two pages (a grid of half a window needs a page at least); one
    // above the view limit is the view limit.
    expect(windowGrid(100, PAGE, 2 ** 32, 10)).toMatchObject({ windowMax: 2 * PAGE, step: PAGE });
    expect(windowGrid(100, PAGE, 2 ** 32, 2 ** 40)).toMatchObject({ windowMax: 2 ** 32 });
    // An odd number of pages: the step rounds down, so a window still holds any range up to windowMax − step.
    expect(windowGrid(100, PAGE, 5 * PAGE + 7)).toMatchObject({ windowMax: 5 * PAGE, step: 2 * PAGE });
  });
});

describe("windowFor", () => {
  test("a file that fits is one window, whatever the range", () => {
    const grid = windowGrid(3 * GiB, PAGE, 2 ** 32);
    expect(isWhole(grid)).toBe(true);
    expect(windowFor(grid, 0, 8)).toEqual({ start: 0, end: 3 * GiB });
    expect(windowFor(grid, 3 * GiB - 1, 1)).toEqual({ start: 0, end: 3 * GiB });
    expect(windowFor(grid, 0, 3 * GiB)).toEqual({ start: 0, end: 3 * GiB });
  });

  test("a file over 4 GiB with Bun's 4 GiB views: grid windows, own windows, and ranges no window holds", () => {
    const size = 5 * GiB + 123;
    const grid = windowGrid(size, PAGE, 2 ** 32);
    // Straddling the 4 GiB mark, up to half a window long: the grid window starting at 2 GiB.
    expect(windowFor(grid, 4 * GiB - 10, GiB)).toEqual({ start: 2 * GiB, end: size });
    expect(windowFor(grid, 2 * GiB, 2 * GiB)).toEqual({ start: 2 * GiB, end: size });
    // Past the end of the file, a grid window is cut at the end.
    expect(windowFor(grid, size - 1, 1)).toEqual({ start: 4 * GiB, end: size });
    // Longer than half a window: a window of its own from its first page.
    expect(windowFor(grid, 5000, 3 * GiB)).toEqual({ start: PAGE, end: 5000 + 3 * GiB });
    // Longer than a window once its first page is counted: none.
    expect(windowFor(grid, 5000, 2 ** 32 - 904)).toEqual({ start: PAGE, end: 2 ** 32 + PAGE });
    expect(windowFor(grid, 5000, 2 ** 32 - 903)).toBeNull();
    expect(windowFor(grid, 1, 4.5 * GiB)).toBeNull();
  });

  test("ranges within half a window of the same grid cell share one window", () => {
    const grid = windowGrid(100 * PAGE, PAGE, 8 * PAGE);
    const windows = replay(grid, [[0, 10], [3 * PAGE, 4 * PAGE], [4 * PAGE - 1, 1], [4 * PAGE, 4 * PAGE], [7 * PAGE + 1, 4 * PAGE]]);
    expect([...windows.values()]).toEqual([{ start: 0, end: 8 * PAGE }, { start: 4 * PAGE, end: 12 * PAGE }]);
  });
});

describe("pieces", () => {
  test("a range longer than any window comes in grid-window pieces (what chunks() yields)", () => {
    const size = 5 * GiB + 123;
    const grid = windowGrid(size, PAGE, 2 ** 32);
    const parts = [...pieces(grid, 1, 4.5 * GiB, GiB)];
    expect(parts.map((p) => p.length)).toEqual([GiB, GiB, GiB, GiB, GiB / 2]);
    expect(parts.map((p) => p.window.start)).toEqual([0, 0, 2 * GiB, 2 * GiB, 4 * GiB]);
    replay(grid, [[1, 4.5 * GiB]], GiB);
  });

  test("random files, windows and ranges replay exactly", () => {
    let seed = 11;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 300; round++) {
      const windowPages = 1 + rand(9);
      const size = rand(40 * PAGE) + (rand(4) === 0 ? 2 ** 33 : 0); // some far past 4 GiB
      const grid = windowGrid(size, PAGE, 2 ** 32, windowPages * PAGE + rand(PAGE));
      const ranges: Array<[number, number]> = [];
      for (let i = 0; i < 6 && size > 0; i++) {
        const offset = rand(size);
        ranges.push([offset, rand(Math.min(size - offset, 3 * windowPages * PAGE) + 1)]);
      }
      replay(grid, ranges, 512 + rand(3 * PAGE));
      for (const [offset, length] of ranges) {
        // What one view can hold: a window holds the range exactly when it fits a page-aligned window.
        const span = windowFor(grid, offset, length);
        const fits = isWhole(grid) || offset + length - (offset - (offset % PAGE)) <= grid.windowMax;
        expect(span !== null).toBe(fits);
        if (span) expect(span.start <= offset && offset + length <= span.end && span.end - span.start <= grid.windowMax).toBe(true);
      }
    }
  });

  test("an empty range has no pieces", () => {
    expect([...pieces(windowGrid(10 * PAGE, PAGE, 4 * PAGE), 5, 0, 100)]).toEqual([]);
  });
});
