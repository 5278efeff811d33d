/**
 * The CLI and its standard streams, through real pipes to a real child process (Bun and Deno: bin/tensormap.js
 * and the sources; Node: the packed package's dist/): a reader that stops early (`| head`) ends it quietly with
 * status 0, and `-` is refused as a path (tensormap reads no stdin and writes no file to stdout).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { save } from "../../src/format/writer.ts";
import { run, tensormapArgv } from "../package/artefact.ts";
import { fixture } from "../support/fixtures.ts";

let scratch: string;
let many: string;
/** How this runtime starts `tensormap` (on Node the packed package, packed first if need be). */
let tensormap: string[];

beforeAll(async () => {
  tensormap = await tensormapArgv();
  scratch = mkdtempSync(join(tmpdir(), "tensormap-pipes-"));
  // 20,000 tensors: `inspect` prints about 1 MB, far more than a pipe holds.
  many = join(scratch, "many.safetensors");
  const tensors = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`layer.${i}.weight`, { dtype: "F32" as const, shape: [1], data: new Float32Array([i]) }]));
  await save(many, tensors);
}, 300_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe(`the CLI's standard streams, under ${runtime}`, () => {
  test("inspect into a pipe whose reader stops after the first lines: status 0, nothing on stderr", async () => {
    const child = spawn(process.execPath, [...tensormap, "inspect", many], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    let first = "";
    // Read one chunk, then close the read end, as `head` does: the child's next write meets EPIPE.
    child.stdout.once("data", (d) => {
      first = String(d);
      child.stdout.destroy();
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on("close", (c, s) => resolve([c, s])));
    expect(first).toMatch(/^name +dtype +shape +size\n/);
    expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: "" });
  });

  test.each([
    ["inspect", ["inspect", "-"]],
    ["convert's output", ["convert", fixture("torch/state-dict.pt"), "-"]],
    ["convert's input", ["convert", "-", "out.safetensors"]],
  ])("'-' as %s is a usage error (status 2) and writes no file", async (_, args) => {
    const cwd = mkdtempSync(join(scratch, "cwd-"));
    const r = await run(process.execPath, [...tensormap, ...args], { cwd });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: '-' is not a path here .*\nusage: tensormap /);
    expect(readdirSync(cwd)).toEqual([]);
  });
});
