import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { open } from "../src/index.ts";
import { planHeader } from "../src/format/writer.ts";
import { loadLibc } from "../src/io/libc.ts";
import { bytesRead } from "./io/smaps.ts";

// A sparse file past 4 GiB: the big tensor is a hole on disk, the small one sits beyond the 4 GiB mark.
const dir = mkdtempSync(join(tmpdir(), "tensormap-big-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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

const noFfi = await loadLibc().then((l) => ("unavailable" in l ? l.unavailable : ""));

/** Bytes of this file's pages mapped into this process, over all its mappings (/proc/self/smaps). */
function mappedOfFile(file: string): number {
  const real = realpathSync(file);
  let total = 0;
  let ours = false;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) ours = line.endsWith(real);
    else if (ours && line.startsWith("Rss:")) total += Number(/(\d+) kB/.exec(line)![1]) * 1024;
  }
  return total;
}

describe("a tensor past the 4 GiB mark reads exactly, and only its bytes are read", () => {
  test("read backend: what read(2) moved is the header and the bytes asked for, not the 4.5 GiB tensor", async () => {
    const before = bytesRead();
    using file = await open(path, { backend: "read" });
    expect(file.info("a_hole").byteLength).toBe(big);
    expect(Array.from(file.tensor("z_tail").bytes)).toEqual(Array.from(tail));
    expect(Array.from(file.slice("a_hole", [[big - 4, big]]).bytes)).toEqual([0, 0, 0, 0]);
    // The header, 8 + 4 bytes of tensors, and this process's own small reads (/proc, its test runner's pipe).
    expect(bytesRead() - before).toBeLessThan(header.byteLength + (1 << 20));
  });

  test.skipIf(noFfi !== "")(`mmap backend: the pages mapped are the header's and the tail's, not the hole's${noFfi && ` (skipped: ${noFfi})`}`, async () => {
    using file = await open(path, { backend: "mmap" });
    expect(Array.from(file.tensor("z_tail").bytes)).toEqual(Array.from(tail));
    expect(Array.from(file.slice("a_hole", [[big - 4, big]]).bytes)).toEqual([0, 0, 0, 0]);
    // A page or two at each end, and the kernel's fault-around (64 KiB) beside each: far from 4.5 GiB.
    expect(mappedOfFile(path)).toBeLessThan(1 << 20);
  });
});
