import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { runtime } from "../../src/runtime.ts";
import { cli, oneErrorLine } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";

const COMMANDS = ["inspect", "verify", "load", "demo"];

describe("help", () => {
  test("--help lists every command and exits 0", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const r = await cli(...args);
      expect(r.code).toBe(0);
      for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, "m"));
    }
  });

  test.each(COMMANDS)("%s --help shows its usage and exits 0", async (c) => {
    for (const r of [await cli(c, "--help"), await cli("help", c)]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: tensormap ${c}\\b`));
      expect(r.stdout).toContain("--help");
      expect(r.stderr).toBe("");
    }
  });
});

describe("usage errors exit 2 with the error and the usage line", () => {
  test.each([
    ["no command", [], /tensormap COMMAND/],
    ["an unknown command", ["frobnicate"], /^error: unknown command 'frobnicate'/],
    ["an unknown option", ["inspect", "--bogus", "x"], /^error: Unknown option '--bogus'/],
    ["a missing argument", ["inspect"], /^error: missing argument\nusage: tensormap inspect PATH/],
    ["an extra argument", ["inspect", "a", "b"], /^error: unexpected argument 'b'/],
    ["a value for a flag", ["inspect", "--json=yes", "x"], /^error: /],
    ["a bad number", ["demo", "--layers", "two"], /^error: --layers wants a positive integer/],
  ])("%s", async (_, args, message) => {
    const r = await cli(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });
});

describe("failures are one line with the code, exit 1", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-"));

  test("a missing file", async () => {
    const r = await cli("inspect", join(dir, "missing.safetensors"));
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: ENOENT: .*missing\.safetensors/);
  });

  test("a file too short to be safetensors", async () => {
    writeFileSync(join(dir, "short.safetensors"), "abc");
    const r = await cli("load", join(dir, "short.safetensors"));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(oneErrorLine(r.stderr)).toMatch(/^error: HeaderTooSmall: /);
  });

  test("a header that is not JSON", async () => {
    const header = Buffer.from("{nope    ");
    const bytes = Buffer.alloc(8 + header.length);
    bytes.writeBigUInt64LE(BigInt(header.length));
    header.copy(bytes, 8);
    writeFileSync(join(dir, "bad.safetensors"), bytes);
    const r = await cli("inspect", "--json", join(dir, "bad.safetensors"));
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: InvalidHeaderDeserialization: /);
  });

  test("a broken index", async () => {
    writeFileSync(join(dir, "model.safetensors.index.json"), '{"weight_map": {"a": "../x.safetensors"}}');
    const r = await cli("inspect", dir);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/^error: InvalidIndex: /);
  });
});

const BUILT = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

// Under Bun and Deno every test above already runs the launcher; under Node it needs the tsc build.
test.skipIf(runtime !== "node" || !existsSync(BUILT))("on Node the launcher runs the tsc build and sets the exit code", () => {
  const bin = fileURLToPath(new URL("../../bin/tensormap.js", import.meta.url));
  const ok = spawnSync(process.execPath, [bin, "verify", fixture("sharded")], { encoding: "utf8" });
  expect([ok.status, ok.stdout]).toEqual([0, `${fixture("sharded")}: ok (17 tensors)\n`]);
  const usage = spawnSync(process.execPath, [bin, "inspect"], { encoding: "utf8" });
  expect(usage.status).toBe(2);
});
