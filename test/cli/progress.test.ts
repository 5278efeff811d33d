import { expect, test } from "vitest";
import { Progress } from "../../src/cli/progress.ts";

function sink(isTTY: boolean, columns = 100) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns, write: (s: string) => void writes.push(s) } };
}

test("piped: nothing at all, not even at finish (the command's summary says the result)", () => {
  const { writes, out } = sink(false);
  const bar = new Progress(out, "load", 3000);
  bar.add(1000);
  bar.add(2000);
  const seconds = bar.finish();
  expect(seconds).toBeGreaterThanOrEqual(0);
  expect(writes).toEqual([]);
});

test("on a terminal: redraws in place, at most every 100 ms, and finish erases the bar", () => {
  const { writes, out } = sink(true);
  const bar = new Progress(out, "load", 4000);
  bar.add(1000); // first add draws
  bar.add(1000); // too soon to redraw
  expect(writes).toHaveLength(1);
  expect(writes[0]).toMatch(/^\rload  25% \[#+-+\] 1\.00 kB\/4\.00 kB .* ETA .*\x1b\[K$/);
  bar.finish();
  expect(writes[1]).toBe("\r\x1b[K");
});

test("a bar that was never drawn is not erased", () => {
  const { writes, out } = sink(true);
  new Progress(out, "load", 0).finish();
  expect(writes).toEqual([]);
});

test.each([20, 30, 50, 60, 80, 120])("at %i columns the bar stays within the line (no wrap, no stale lines)", (columns) => {
  for (const label of ["load", "convert + verify", "load → cuda:0"]) {
    const { writes, out } = sink(true, columns);
    const bar = new Progress(out, label, 4.2e12);
    bar.add(1.234e12);
    const line = writes[0]!.replace(/^\r/, "").replace(/\x1b\[K$/, "");
    expect(line.length, line).toBeLessThan(columns);
    expect(line.startsWith(label.slice(0, columns - 1)), line).toBe(true);
    if (columns >= 80) expect(line).toMatch(/\[#+-+\] 1\.23 TB\/4\.20 TB .* ETA /);
  }
});
