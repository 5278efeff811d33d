import { expect, test } from "vitest";
import { closest, editDistance } from "../../src/cli/suggest.ts";

test("edit distance counts insertions, deletions, substitutions and neighbour swaps", () => {
  expect([editDistance("", ""), editDistance("abc", ""), editDistance("", "ab"), editDistance("inspect", "inspect")]).toEqual([0, 3, 2, 0]);
  expect([editDistance("inspcet", "inspect"), editDistance("insect", "inspect"), editDistance("inspectt", "inspect"), editDistance("onspect", "inspect")]).toEqual([1, 1, 1, 1]);
  expect(editDistance("kitten", "sitting")).toBe(3);
});

test("closest: near enough for its length, first on a tie, case ignored", () => {
  expect(closest("LAOD", ["inspect", "load"])).toBe("load");
  expect(closest("lo", ["load"])).toBeUndefined(); // two edits in a two-letter word is no typo
  expect(closest("convrt", ["convert", "verify"])).toBe("convert");
  expect(closest("xyz", ["inspect", "verify"])).toBeUndefined();
  expect(closest("ab", ["ax", "ay"])).toBe("ax");
});
