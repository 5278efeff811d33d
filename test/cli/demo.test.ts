import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { expect, test } from "vitest";
import { gpt2Shapes, randomTensors } from "../../src/cli/demo.ts";
import { hasFfi } from "../../ffi/runtime.ts";
import { cli } from "../support/cli.ts";

test("the demo model has GPT-2 small's 148 tensors and 124,439,808 parameters", () => {
  const shapes = gpt2Shapes();
  expect(shapes).toHaveLength(148);
  expect(shapes.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0)).toBe(124_439_808);
  expect(new Map(shapes).get("h.11.mlp.c_fc.weight")).toEqual([768, 3072]);
});

test("random weights are finite, small, varied and repeatable", () => {
  const a = randomTensors(gpt2Shapes(1, 10), 7);
  const w = a.get("h.0.attn.c_attn.weight")!.data as Float32Array;
  expect(w.length).toBe(768 * 2304);
  expect(w.every((x) => Number.isFinite(x) && Math.abs(x) < 0.02 && x !== 0)).toBe(true);
  expect(new Set(w.subarray(0, 1000)).size).toBeGreaterThan(990);
  expect(w.some((x) => x < 0) && w.some((x) => x > 0)).toBe(true);
  const bytes = (t: ArrayBufferView) => Buffer.from(t.buffer, t.byteOffset, t.byteLength);
  expect(bytes(randomTensors(gpt2Shapes(1, 10), 7).get("h.0.attn.c_attn.weight")!.data).equals(bytes(w))).toBe(true);
  expect(bytes(randomTensors(gpt2Shapes(1, 10), 8).get("h.0.attn.c_attn.weight")!.data).equals(bytes(w))).toBe(false);
});

test("a small demo writes, inspects and loads, then removes only what it wrote", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-demo-test-"));
  writeFileSync(join(dir, "keep-me.txt"), "not the demo's");
  // A folder the demo writes into, already holding something of the user's.
  mkdirSync(join(dir, "single"));
  writeFileSync(join(dir, "single", "notes.txt"), "mine too");
  const r = await cli("demo", "--dir", dir, "--layers", "1", "--vocab", "100", "--max-shard-size", "10MB");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("generated 16 tensors, 7,952,640 F32 parameters (31.8 MB)");
  expect(r.stdout).toMatch(/wrote 4 shards of at most 10MB \+ index/);
  expect(r.stdout).toContain("16 tensors, 7,952,640 parameters, 31.8 MB (31,810,560 bytes) in 4 shards");
  expect(r.stdout).toMatch(/… 8 more tensors/);
  // A default open maps the file wherever there is FFI.
  expect(r.stdout).toMatch(new RegExp(`^ {2}16 tensors, 31\\.8 MB in .*\\(backend ${hasFfi() ? "mmap" : "read"}\\)$`, "m"));
  // Piped: no bars, and each load's result only once, on stdout.
  expect(r.stderr).toBe("");
  // No GPU on these machines: the device step falls back to cpu and says why.
  expect(r.stdout).toMatch(/--device auto\n {2}16 tensors, 31\.8 MB in .*\(device cpu\)\n {2}auto chose cpu: no usable GPU/);
  // 1 single file, 4 shards and the index; the folders it made go too, the user's stay.
  expect(r.stdout).toMatch(new RegExp(`\nremoved the 6 files it wrote in ${dir} \\(--keep keeps them\\)\n$`));
  expect(readdirSync(dir).sort()).toEqual(["keep-me.txt", "single"]);
  expect(readdirSync(join(dir, "single"))).toEqual(["notes.txt"]);
  rmSync(dir, { recursive: true });
});

test("--dir naming a file is refused before anything is generated", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-demo-test-"));
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  const r = await cli("demo", "--dir", file, "--layers", "1", "--vocab", "100");
  expect([r.code, r.stdout, r.stderr]).toEqual([1, "", `error: ENOTDIR: --dir ${file} is not a folder\n`]);
  rmSync(dir, { recursive: true });
});

test("--keep leaves a folder that verify accepts", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), "tensormap-demo-test-")), "demo");
  const r = await cli("demo", "--dir", dir, "--layers", "1", "--vocab", "100", "--max-shard-size", "20MB", "--keep");
  expect(r.code).toBe(0);
  expect(existsSync(join(dir, "single", "model.safetensors"))).toBe(true);
  const v = await cli("verify", join(dir, "single", "model.safetensors"), join(dir, "sharded"));
  expect(v.stdout).toBe(`${join(dir, "single", "model.safetensors")}: ok (16 tensors)\n${join(dir, "sharded")}: ok (16 tensors)\n`);
  expect(r.stdout).toMatch(new RegExp(`\nkept ${dir}\n$`));
  rmSync(dirname(dir), { recursive: true });
});

test("without --dir the demo's own temporary folder goes, and it says so", async () => {
  const r = await cli("demo", "--layers", "1", "--vocab", "100", "--max-shard-size", "20MB");
  expect(r.code).toBe(0);
  const m = /\nremoved (\S+) \(4 files; --keep keeps them\)\n$/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  expect(m![1]!.startsWith(join(tmpdir(), "tensormap-demo-"))).toBe(true);
  expect(existsSync(m![1]!)).toBe(false);
});
