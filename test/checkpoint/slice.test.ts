import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { open, save } from "../../src/index.ts";

async function grid() {
  const path = join(mkdtempSync(join(tmpdir(), "tensormap-")), "g.safetensors");
  const data = Float32Array.from({ length: 4 * 5 * 6 }, (_, i) => i);
  await save(path, { g: { dtype: "F32", shape: [4, 5, 6], data }, p: { dtype: "F4", shape: [4, 4], data: new Uint8Array(8).map((_, i) => i) } });
  return { path, at: (a: number, b: number, c: number) => a * 30 + b * 6 + c };
}

test("ranges, indices and null pick the right elements in row-major order", async () => {
  const { path, at } = await grid();
  using file = await open(path);
  const s = file.slice("g", [[1, 3], 2, [-2, 6]]);
  expect(s.shape).toEqual([2, 2]);
  expect(Array.from(s.toFloat32())).toEqual([at(1, 2, 4), at(1, 2, 5), at(2, 2, 4), at(2, 2, 5)]);
  expect(Array.from(file.slice("g", [null, [0, 1]]).toFloat32())).toEqual([0, 1, 2, 3, 4, 5].flatMap((c) => [0, 1, 2, 3].map((a) => at(a, 0, c))).sort((x, y) => x - y));
  expect(file.slice("g", []).bytes).toEqual(file.tensor("g").bytes);
  expect(file.slice("g", [[2, 2]]).shape).toEqual([0, 5, 6]);
  expect(file.slice("g", [3, 4, 5]).shape).toEqual([]);
  expect(Array.from(file.slice("g", [3, 4, 5]).toFloat32())).toEqual([at(3, 4, 5)]);
});

test("slice errors are named", async () => {
  const { path } = await grid();
  using file = await open(path);
  expect(() => file.slice("g", [0, 0, 0, 0])).toThrow(expect.objectContaining({ code: "TooManySlices" }));
  expect(() => file.slice("g", [[0, 5]])).toThrow(expect.objectContaining({ code: "SliceOutOfRange" }));
  expect(() => file.slice("g", [4])).toThrow(expect.objectContaining({ code: "SliceOutOfRange" }));
  expect(() => file.slice("g", [[3, 1]])).toThrow(expect.objectContaining({ code: "SliceOutOfRange" }));
  expect(() => file.slice("p", [null, [0, 1]])).toThrow(expect.objectContaining({ code: "MisalignedSlice" }));
  expect(Array.from(file.slice("p", [[1, 3]]).bytes)).toEqual([2, 3, 4, 5]);
});
