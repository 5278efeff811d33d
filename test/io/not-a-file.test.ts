import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { open } from "../../src/index.ts";

const dir = mkdtempSync(join(tmpdir(), "tensormap-notfile-"));
const fifo = join(dir, "model.safetensors");
execFileSync("mkfifo", [fifo]);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Opening a FIFO for reading blocks until a writer comes: it must be refused before any open(2).
test.each([
  ["a FIFO", fifo],
  ["a character device", "/dev/zero"],
  ["a folder", dir],
])("%s is NotAFile under every backend, without blocking", async (_, path) => {
  for (const backend of ["read", "auto"] as const) {
    await expect(open(path, { backend })).rejects.toMatchObject({ name: "SafetensorsError", code: "NotAFile" });
  }
}, 10_000);
