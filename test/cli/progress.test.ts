import { expect, test } from "vitest";
import { Progress } from "../../src/cli/progress.ts";

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns: 100, write: (s: string) => void writes.push(s) } };
}

test("piped: silent until finish, then one summary line", () => {
  const { writes, out } = sink(false);
  const bar = new Progress(out, "load", 3000);
  bar.add(1000);
  bar.add(2000);
  expect(writes).toEqual([]);
  const seconds = bar.finish();
  expect(seconds).toBeGreaterThanOrEqual(0);
  expect(writes).toHaveLength(1);
  expect(writes[0]).toMatch(/^load: 3\.00 kB in \d+\.\d+ m?s \((\d+(?:\.\d+)? [kMGT]?B\/s|-)\)\n$/);
});

test("on a terminal: redraws in place, at most every 100 ms, and ends the line", () => {
  const { writes, out } = sink(true);
  const bar = new Progress(out, "load", 4000);
  bar.add(1000); // first add draws
  bar.add(1000); // too soon to redraw
  expect(writes).toHaveLength(1);
  expect(writes[0]).toMatch(/^\rload  25% \[#+-+\] 1\.00 kB\/4\.00 kB .* ETA .*\x1b\[K$/);
  expect(writes[0]!.length).toBeLessThan(100 + 10);
  bar.finish();
  expect(writes[1]).toMatch(/^\rload: 2\.00 kB in .*\x1b\[K\n$/);
});
