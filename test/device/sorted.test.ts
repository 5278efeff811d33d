import { describe, expect, it } from "vitest";
import { lastAtOrBefore } from "../../src/device/sorted.ts";

describe("lastAtOrBefore", () => {
  it("finds the range an offset falls in, its start included, and −1 before the first", () => {
    const starts = [0, 100, 250, 251];
    expect([-1, 0, 99, 100, 249, 250, 251, 10_000].map((x) => lastAtOrBefore(starts, x))).toEqual([-1, 0, 0, 1, 1, 2, 3, 3]);
    expect(lastAtOrBefore([], 5)).toBe(-1);
  });
});
