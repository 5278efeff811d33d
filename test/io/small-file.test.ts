import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { readSmallFile } from "../../src/io/small-file.ts";

const dir = mkdtempSync(join(tmpdir(), "tensormap-small-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MB100 = 100_000_000;

describe("readSmallFile", () => {
  test("reads a regular file whole, through a symbolic link too", () => {
    const path = join(dir, "config.json");
    writeFileSync(path, '{"hidden_size": 768}');
    symlinkSync(path, join(dir, "link.json"));
    for (const p of [path, join(dir, "link.json")]) expect(new TextDecoder().decode(readSmallFile(p, MB100))).toBe('{"hidden_size": 768}');
    writeFileSync(join(dir, "empty.json"), "");
    expect(readSmallFile(join(dir, "empty.json"), 0).length).toBe(0);
  });

  test("exactly the cap is fine; a byte more is FileTooLarge, refused before it is read", () => {
    const path = join(dir, "index.json");
    writeFileSync(path, "x".repeat(1000));
    expect(readSmallFile(path, 1000).length).toBe(1000);
    expect(() => readSmallFile(path, 999)).toThrow(
      expect.objectContaining({ code: "FileTooLarge", message: `${path} is 1000 bytes, more than the 999 allowed` }),
    );
    // 3 GB of hole: refused by its size, with nothing allocated for it.
    const huge = join(dir, "huge.json");
    writeFileSync(huge, "");
    truncateSync(huge, 3e9);
    expect(() => readSmallFile(huge, MB100)).toThrow(expect.objectContaining({ code: "FileTooLarge" }));
  });

  test("a file that says it is empty and is not (procfs) is read to its end, and refused once past the cap", () => {
    const status = new TextDecoder().decode(readSmallFile("/proc/self/status", MB100));
    expect(status).toMatch(/^Name:/);
    expect(status).toMatch(/VmSize:/);
    expect(() => readSmallFile("/proc/self/status", 100)).toThrow(
      expect.objectContaining({ code: "FileTooLarge", message: "/proc/self/status grew past the 100 bytes allowed while being read" }),
    );
  });

  test("a FIFO is NotAFile at once, without waiting for a writer", () => {
    const fifo = join(dir, "model.safetensors.index.json");
    execFileSync("mkfifo", [fifo]);
    expect(() => readSmallFile(fifo, MB100)).toThrow(expect.objectContaining({ code: "NotAFile", message: `${fifo} is not a regular file` }));
  }, 10_000);

  test("/dev/zero behind a symbolic link, and a folder, are NotAFile without a byte read", () => {
    const zero = join(dir, "zero.json");
    symlinkSync("/dev/zero", zero);
    expect(() => readSmallFile(zero, MB100)).toThrow(expect.objectContaining({ code: "NotAFile" }));
    expect(() => readSmallFile(dir, MB100)).toThrow(expect.objectContaining({ code: "NotAFile" }));
  });

  test("a missing file is ENOENT naming it", () => {
    const missing = join(dir, "missing.json");
    expect(() => readSmallFile(missing, MB100)).toThrow(expect.objectContaining({ code: "ENOENT", message: expect.stringContaining(missing) }));
  });
});
