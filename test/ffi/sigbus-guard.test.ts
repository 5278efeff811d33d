import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { X64 } from "../../ffi/sigbus-guard.ts";

const source = fileURLToPath(new URL("../../ffi/sigbus-guard.x64.s", import.meta.url));
const has = (tool: string) => spawnSync(tool, ["--version"]).status === 0;

// The machine code is only as trustworthy as its match with the source a reader can check.
describe.skipIf(!has("as") || !has("objcopy") || !has("nm") || process.arch !== "x64")("the SIGBUS handler's machine code", () => {
  test("is sigbus-guard.x64.s assembled, with the label offsets the module uses", () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-asm-"));
    try {
      const object = join(dir, "h.o");
      const binary = join(dir, "h.bin");
      expect(spawnSync("as", [source, "-o", object]).status).toBe(0);
      expect(spawnSync("objcopy", ["-O", "binary", "-j", ".text", object, binary]).status).toBe(0);
      expect(readFileSync(binary).toString("hex")).toBe(X64.code);
      const labels = new Map(
        spawnSync("nm", [object], { encoding: "utf8" }).stdout.trim().split("\n").map((l) => {
          const [at, , name] = l.split(" ");
          return [name, parseInt(at!, 16)] as const;
        }),
      );
      expect(labels.get("handler")).toBe(0);
      expect(labels.get("restorer")).toBe(X64.restorer);
      expect(labels.get("table")).toBe(X64.table);
      expect(X64.code.length / 2).toBe(X64.table);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
