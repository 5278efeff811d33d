import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { open } from "../src/index.ts";
import { planHeader } from "../src/format/writer.ts";

// A sparse file past 4 GiB: the big tensor is a hole on disk, the small one sits beyond the 4 GiB mark.
const dir = mkdtempSync(join(tmpdir(), "tensormap-big-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a tensor past the 4 GiB mark reads exactly, and only its bytes are read", async () => {
  const big = 4.5 * 2 ** 30;
  const tail = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  // The header from shapes alone: the data is never built, the big tensor stays a hole.
  const { header } = planHeader([["a_hole", { dtype: "U8", shape: [big], byteLength: big }], ["z_tail", { dtype: "U8", shape: [8], byteLength: 8 }]]);
  const path = join(dir, "big.safetensors");
  const fd = openSync(path, "w");
  writeSync(fd, header, 0, header.byteLength, 0);
  ftruncateSync(fd, header.byteLength + big + 8);
  writeSync(fd, tail, 0, 8, header.byteLength + big);
  closeSync(fd);

  using file = await open(path, { backend: "read" });
  expect(file.info("a_hole").byteLength).toBe(big);
  expect(Array.from(file.tensor("z_tail").bytes)).toEqual(Array.from(tail));
  expect(Array.from(file.slice("a_hole", [[big - 4, big]]).bytes)).toEqual([0, 0, 0, 0]);
});
