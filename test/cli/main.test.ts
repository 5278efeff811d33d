import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { errorLine } from "../../src/cli/command.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { runtime } from "../../ffi/runtime.ts";
import { cli, oneErrorLine } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";

const COMMANDS = ["inspect", "verify", "load", "convert", "demo"];

describe("help", () => {
  test("--help lists every command and exits 0", async () => {
    for (const args of [["--help"], ["-h"], ["help"]]) {
      const r = await cli(...args);
      expect(r.code).toBe(0);
      for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, "m"));
    }
  });

  test("the overview says PyTorch checkpoints work too", async () => {
    expect((await cli("--help")).stdout.split("\n")[0]).toMatch(/^tensormap: .*PyTorch \(\.bin\/\.pt\)/);
  });

  test.each(COMMANDS)("%s --help lists -h, --help under options:, lined up with the others", async (c) => {
    const lines = (await cli(c, "--help")).stdout.split("\n");
    expect(lines).toContain("options:");
    const options = lines.slice(lines.indexOf("options:") + 1).filter((l) => l.startsWith("  -"));
    expect(options.at(-1)).toMatch(/^ {2}-h, --help +show this help$/);
    const columns = options.map((l) => l.match(/^ {2}-.*? {2,}(?=\S)/)![0].length);
    expect(new Set(columns).size).toBe(1);
  });

  test.each(["convert", "demo"])("%s --help says a tensor larger than --max-shard-size gets a shard of its own", async (c) => {
    expect((await cli(c, "--help")).stdout.replace(/\s+/g, " ")).toMatch(/--max-shard-size SIZE .*a tensor larger than SIZE gets a shard of its own/);
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
    ["no command", [], /^error: no command given\n[^]*^usage: tensormap COMMAND/m],
    ["an unknown command", ["frobnicate"], /^error: unknown command 'frobnicate'\n[^]*^usage: tensormap COMMAND/m],
    ["an unknown option", ["inspect", "--bogus", "x"], /^error: unknown option --bogus\nusage: tensormap inspect PATH/],
    ["an unknown single-dash option", ["inspect", "x", "-bogus"], /^error: unknown option -bogus\n/],
    ["a missing argument", ["inspect"], /^error: missing argument\nusage: tensormap inspect PATH/],
    ["an extra argument", ["inspect", "a", "b"], /^error: unexpected argument 'b'/],
    ["a value for a flag", ["inspect", "--json=yes", "x"], /^error: --json takes no value\nusage: tensormap inspect/],
    ["an option without its value", ["convert", "a", "b", "--max-shard-size"], /^error: --max-shard-size wants a value\nusage: tensormap convert/],
    ["a value that looks like an option", ["convert", "a", "b", "--max-shard-size", "-5"], /^error: --max-shard-size wants a value: write --max-shard-size=-5 /],
    ["an empty path to inspect", ["inspect", ""], /^error: empty path argument\nusage: tensormap inspect PATH/],
    ["an empty path to verify", ["verify", "a", ""], /^error: empty path argument\nusage: tensormap verify/],
    ["an empty path to load", ["load", ""], /^error: empty path argument\nusage: tensormap load/],
    ["an empty path to convert", ["convert", "", "out"], /^error: empty path argument\nusage: tensormap convert/],
    ["a bad number", ["demo", "--layers", "two"], /^error: --layers wants a positive integer/],
  ])("%s", async (_, args, message) => {
    const r = await cli(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });
});

describe("a mistyped command or option: did you mean …, and the short usage line, not the whole help", () => {
  test.each([
    [["inspct", "x"], "error: unknown command 'inspct'; did you mean 'inspect'?"],
    [["verfiy"], "error: unknown command 'verfiy'; did you mean 'verify'?"],
    [["--verison"], "error: unknown command '--verison'; did you mean --version?"],
    [["frobnicate"], "error: unknown command 'frobnicate'"],
    [["inspect", "--jsno", "x"], "error: unknown option --jsno; did you mean --json?"],
    [["inspect", "-jsn", "x"], "error: unknown option -jsn; did you mean --json?"],
    [["inspect", "--hepl"], "error: unknown option --hepl; did you mean --help?"],
    [["convert", "a", "b", "--max-shard-sise=3"], "error: unknown option --max-shard-sise=3; did you mean --max-shard-size?"],
    [["demo", "--kep"], "error: unknown option --kep; did you mean --keep?"],
    [["inspect", "--bogus", "x"], "error: unknown option --bogus"],
  ])("%j", async (args, error) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe(error);
    expect(lines[1]).toMatch(/^usage: tensormap \S/);
  });

  test("no command: the error and one usage line naming the commands", async () => {
    const r = await cli();
    expect(r.stderr).toBe(`error: no command given\nusage: tensormap COMMAND [ARGS] [--help]  (commands: ${COMMANDS.join(", ")}; or --version)\n`);
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

  test.each([
    ["a text file", "text.safetensors", Buffer.from("hello, this is not a checkpoint\n")],
    ["a text file named .bin", "text.bin", Buffer.from("# notes\nnot a model either\n")],
    ["random bytes", "random.pt", Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24 | 1))],
  ])("%s says it is not a safetensors or PyTorch file, and not what its first bytes read as", async (_, name, bytes) => {
    writeFileSync(join(dir, name), bytes);
    for (const args of [["inspect", join(dir, name)], ["load", join(dir, name)]]) {
      const r = await cli(...args);
      expect(r.code).toBe(1);
      const line = oneErrorLine(r.stderr);
      expect(line).toMatch(/^error: HeaderTooLarge: not a safetensors or PyTorch file /);
      expect(line).not.toContain(String(bytes.readBigUInt64LE(0)));
    }
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

describe("errorLine", () => {
  test("a raw Node fs error: its errno code, the call and path, the reason", () => {
    const file = join(mkdtempSync(join(tmpdir(), "tensormap-cli-")), "single");
    writeFileSync(file, "");
    let thrown: unknown;
    try {
      mkdirSync(join(file, "sub"));
    } catch (e) {
      thrown = e;
    }
    expect(errorLine(thrown)).toBe(`ENOTDIR: cannot mkdir ${join(file, "sub")}: not a directory`);
  });

  test("SafetensorsError: its code; any other error: its name and first line", () => {
    expect(errorLine(new SafetensorsError("HeaderTooSmall", "file is 3 bytes"))).toBe("HeaderTooSmall: file is 3 bytes");
    expect(errorLine(new TypeError("bad\nmore"))).toBe("TypeError: bad");
  });
});

/** The part of Deno's API the permissions test uses. */
interface DenoCommand {
  execPath(): string;
  Command: new (cmd: string, opts: { args: string[]; stdin: "null" }) => { outputSync(): { code: number; stderr: Uint8Array } };
}

// Deno without permission flags refuses the launcher's import of the sources; no stdin, so it cannot prompt.
// Deno.Command, not node:child_process: a Deno child spawned through that one is granted its parent's permissions.
test.skipIf(runtime !== "deno")("under Deno without permissions the launcher says which flags it needs", () => {
  const deno = (globalThis as unknown as { Deno: DenoCommand }).Deno;
  const bin = fileURLToPath(new URL("../../bin/tensormap.js", import.meta.url));
  const r = new deno.Command(deno.execPath(), { args: ["run", bin, "inspect", "x"], stdin: "null" }).outputSync();
  expect(r.code).toBe(1);
  expect(oneErrorLine(new TextDecoder().decode(r.stderr))).toMatch(/^error: PermissionDenied: tensormap needs Deno's permissions: deno run -A bin\/tensormap\.js/);
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
