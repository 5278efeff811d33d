import { expect, test } from "vitest";
import { formatBytes, formatCount, formatDuration, formatRate, printable, shorten, table } from "../../src/cli/format.ts";

test("bytes in decimal units with three significant digits", () => {
  expect([0, 999, 1000, 1536, 999_499, 999_500, 497_759_232, 5e9, 1.5e15, 3e18].map(formatBytes)).toEqual([
    "0 B", "999 B", "1.00 kB", "1.54 kB", "999 kB", "1.00 MB", "498 MB", "5.00 GB", "1.50 PB", "3000 PB",
  ]);
});

test("counts, rates and durations", () => {
  expect([0, 999, 1000, 124_439_808].map(formatCount)).toEqual(["0", "999", "1,000", "124,439,808"]);
  expect([formatRate(2e9, 0.5), formatRate(1, 0), formatRate(84, 0.005), formatRate(4.2613e10, 1)]).toEqual(["4.00 GB/s", "-", "16.8 kB/s", "42.6 GB/s"]);
  expect([0.0042, 0.123, 12.34, 245, 3600].map(formatDuration)).toEqual(["4.2 ms", "0.12 s", "12.3 s", "4m05s", "60m00s"]);
});

test("tables pad columns, right-align the ones asked, and trim line ends", () => {
  expect(table([["name", "size", "x"], ["wte", "154 MB", ""]], [1])).toBe("name    size  x\nwte   154 MB");
  expect(table([])).toBe("");
});

test("printable escapes what could drive the terminal and keeps the rest", () => {
  expect(printable("a\u001b[2Jb\nc\u009bd")).toBe("a\\u001b[2Jb\\u000ac\\u009bd");
  expect(printable("model.layers.0.ωeight")).toBe("model.layers.0.ωeight");
});

test("shorten keeps short text and cuts long text at a code point, saying how long it was", () => {
  expect(shorten("abc", 3)).toBe("abc");
  expect(shorten("abcd", 3)).toBe("abc… (4 characters)");
  expect(shorten("😀".repeat(1500), 2)).toBe("😀😀… (1,500 characters)");
});
