import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";
import { serialize } from "../../src/format/writer.ts";
import { cli, oneErrorLine } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";

/** What a file or an argument may hold to drive a terminal: ESC sequences, BEL, C1 CSI, a newline, DEL, a bidi override. */
const EVIL = "a\u001b[31m\u0007\u009b2J\n\u007f\u202eb\u2066";
/** Any of them left raw in output (newlines aside, which end lines; counted separately). */
// deno-lint-ignore no-control-regex
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const dir = mkdtempSync(join(tmpdir(), "tensormap-escape-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tensor = { dtype: "F32" as const, shape: [1], data: new Float32Array([1]) };
const single = join(dir, `one${EVIL}.safetensors`);
writeFileSync(single, serialize({ [`w${EVIL}`]: tensor }, { [`k${EVIL}`]: `v${EVIL}` }));

const sharded = join(dir, "sharded");
mkdirSync(sharded);
const shard = `s${EVIL}.safetensors`;
writeFileSync(join(sharded, shard), serialize({ [`w${EVIL}`]: tensor }));
writeFileSync(join(sharded, "model.safetensors.index.json"), JSON.stringify({ metadata: { note: EVIL }, weight_map: { [`w${EVIL}`]: shard } }));

const missing = join(dir, "missing");
mkdirSync(missing);
writeFileSync(join(missing, "model.safetensors.index.json"), JSON.stringify({ weight_map: { [`w${EVIL}`]: shard } }));

function expectEscaped(text: string, lines: number): void {
  expect(text).not.toMatch(RAW);
  expect(text.trimEnd().split("\n")).toHaveLength(lines);
  expect(text).toContain("\\u001b[31m\\u0007\\u009b2J\\u000a\\u007f\\u202eb\\u2066");
}

test("inspect's table escapes tensor names, metadata, shard names and index values", async () => {
  const a = await cli("inspect", single);
  expect(a.code).toBe(0);
  expectEscaped(a.stdout, a.stdout.trimEnd().split("\n").length);
  expect(a.stdout).toMatch(/^wa\\u001b\[31m.*F32/m);
  const b = await cli("inspect", sharded);
  expect(b.code).toBe(0);
  expect(b.stdout).not.toMatch(RAW);
  expect(b.stdout).toMatch(/^wa\\u001b\S+ +F32 +\[1\] +4 B +sa\\u001b\S+\.safetensors$/m);
  expect(b.stdout).toContain('index metadata: {"note":"a\\u001b[31m');
});

test("inspect --json escapes what JSON leaves raw, and stays the same JSON", async () => {
  const r = await cli("inspect", "--json", sharded);
  expect(r.stdout).not.toMatch(RAW);
  const doc = JSON.parse(r.stdout);
  expect(doc.tensors[0].name).toBe(`w${EVIL}`);
  expect(doc.tensors[0].file).toBe(shard);
});

test("verify escapes the path and the error's quoted names, one line per path", async () => {
  const r = await cli("verify", single, missing, join(dir, `gone${EVIL}`));
  expect(r.code).toBe(1);
  expect(r.stdout).not.toMatch(RAW);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines).toHaveLength(3);
  expect(lines[0]).toMatch(/^.*one.*\\u2066\.safetensors: ok \(1 tensor\)$/);
  expect(lines[1]).toMatch(/: MissingShard: .*s.*\\u202eb/);
  expect(lines[2]).toMatch(/gone.*: ENOENT: .*gone.*\\u2066/);
});

test("errors printed by main are one escaped line", async () => {
  for (const args of [["inspect", missing], ["load", join(dir, `gone${EVIL}`)], ["convert", fixture("torch/pytorch_model.bin"), join(dir, `no${EVIL}`, "x.safetensors")]]) {
    const r = await cli(...args);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).not.toMatch(RAW);
    expect(r.stderr).toContain("\\u202eb");
  }
});

test("usage errors escape the argument they quote", async () => {
  for (const args of [[`x${EVIL}`], ["inspect", `--x${EVIL}`, "p"], ["inspect", "a", `b${EVIL}`], ["demo", "--layers", `2${EVIL}`]]) {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(RAW);
    expect(r.stderr.split("\n")[0]).toContain("\\u202eb");
  }
});

test("convert escapes the paths it names", async () => {
  const out = join(dir, `out${EVIL}.safetensors`);
  const r = await cli("convert", fixture("torch/pytorch_model.bin"), out);
  expect(r.code).toBe(0);
  expectEscaped(r.stdout, 1);
});
