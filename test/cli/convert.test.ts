import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { cli } from "../support/cli.ts";
import { onTerminal } from "./terminal.ts";
import { fixture } from "../support/fixtures.ts";
import { Pickle, torchZip } from "../pickle/build.ts";

test("convert writes a verified .safetensors that verify and inspect then accept", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const out = join(dir, "model.safetensors");
  const r = await cli("convert", fixture("torch/pytorch_model.bin"), out);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(new RegExp(`^4 tensors, 84 B in \\d+\\.\\d+ m?s → ${out}\n$`));
  // Piped: no bar, and the result is said once, on stdout.
  expect(r.stderr).toBe("");
  expect((await cli("verify", out)).stdout).toBe(`${out}: ok (4 tensors)\n`);
  expect((await cli("inspect", out)).stdout).toMatch(/metadata: format=pt/);
  rmSync(dir, { recursive: true });
});

test("convert says which non-tensor values it left out", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const out = join(dir, "ckpt.safetensors");
  const r = await cli("convert", fixture("torch/training-checkpoint.pt"), out);
  expect(r.code).toBe(0);
  // The first five by name, then how many more.
  expect(r.stderr).toMatch(/^note: 17 non-tensor values not written \(safetensors holds tensors only\): optimizer\.param_groups\.0\.lr, (optimizer\.param_groups\.0\.\w+, ){4}… 12 more\n$/);
  // A checkpoint of tensors only gets no note.
  expect((await cli("convert", fixture("torch/pytorch_model.bin"), join(dir, "m.safetensors"))).stderr).not.toMatch(/note:/);
  rmSync(dir, { recursive: true });
});

test("verify and inspect accept pickle checkpoints; inspect shows their other values", async () => {
  const ckpt = fixture("torch/training-checkpoint.pt");
  expect((await cli("verify", ckpt)).stdout).toBe(`${ckpt}: ok (16 tensors)\n`);
  const inspect = await cli("inspect", ckpt);
  expect(inspect.stdout).toMatch(/^ {2}epoch +3$/m);
  expect(inspect.stdout).toMatch(/^ {2}optimizer\.param_groups\.0\.betas +\(0\.9, 0\.999\)$/m);
  const json = JSON.parse((await cli("inspect", "--json", ckpt)).stdout);
  expect(json.values).toMatchObject({ epoch: 3, name: "run-1", "optimizer.param_groups.0.betas": [0.9, 0.999] });
});

test("a malicious checkpoint: verify names the refusal, convert fails and writes nothing", async () => {
  const bad = fixture("malicious/builtins-exec.pt");
  expect((await cli("verify", bad)).stdout).toBe(`${bad}: UnsafePickle: refused global __builtin__.exec\n`);
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const r = await cli("convert", bad, join(dir, "x.safetensors"));
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("error: UnsafePickle: refused global __builtin__.exec\n");
  expect(readdirSync(dir)).toEqual([]);
  rmSync(dir, { recursive: true });
});

test("--max-shard-size must be a size, and only for sharded input", async () => {
  const bad = await cli("convert", fixture("torch/pytorch_model.bin"), "out", "--max-shard-size", "zz");
  expect([bad.code, bad.stderr.split("\n")[0]]).toEqual([2, 'error: --max-shard-size: invalid shard size "zz": want a positive byte count or a string like "5GB" or "500MiB"']);
  const single = await cli("convert", fixture("torch/pytorch_model.bin"), "out.safetensors", "--max-shard-size", "1GB");
  expect(single.code).toBe(2);
});

test("--quiet: no bar on a terminal and no note; the result line still on stdout, errors still on stderr", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const run = onTerminal;
  const loud = await run("convert", fixture("torch/training-checkpoint.pt"), join(dir, "a.safetensors"));
  expect(loud.stderr).toMatch(/^\rconvert \+ verify .*\r\x1b\[Knote: 17 /);
  const quiet = await run("convert", "-q", fixture("torch/training-checkpoint.pt"), join(dir, "b.safetensors"));
  expect([quiet.code, quiet.stderr]).toEqual([0, ""]);
  expect(quiet.stdout).toMatch(/^16 tensors, .* → /);
  const failed = await run("convert", "--quiet", fixture("malicious/builtins-exec.pt"), join(dir, "c.safetensors"));
  expect([failed.code, failed.stderr]).toEqual([1, "error: UnsafePickle: refused global __builtin__.exec\n"]);
  expect((await run("inspect", "--quiet", fixture("sharded"))).stderr).toMatch(/^error: unknown option --quiet/);
  rmSync(dir, { recursive: true });
});

test("a checkpoint with no tensors at all is refused (NoTensors), and nothing is written", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const onlyEpoch = join(dir, "epoch.pt");
  writeFileSync(onlyEpoch, torchZip(new Pickle().proto().emptyDict().mark().str("epoch").int(3).setitems().stop().bytes(), {}));
  const empty = join(dir, "empty.pt");
  writeFileSync(empty, torchZip(new Pickle().proto().emptyDict().stop().bytes(), {}));
  const out = join(dir, "out");
  mkdirSync(out);
  const a = await cli("convert", onlyEpoch, join(out, "a.safetensors"));
  expect([a.code, a.stdout, a.stderr]).toEqual([1, "", `error: NoTensors: ${onlyEpoch} holds no tensors (only 1 other value): nothing to convert\n`]);
  const b = await cli("convert", empty, join(out, "b.safetensors"));
  expect(b.code).toBe(1);
  expect(b.stderr).toMatch(/^error: NoTensors: .*empty\.pt holds no tensors\b.*: nothing to convert\n$/);
  expect(readdirSync(out)).toEqual([]);
  rmSync(dir, { recursive: true });
});

test("--filter writes only the tensors it keeps, notes only the values it keeps, and refuses a filter that keeps none", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-cli-convert-"));
  const ckpt = fixture("torch/training-checkpoint.pt");
  const out = join(dir, "model.safetensors");
  const r = await cli("convert", ckpt, out, "--filter", "!optimizer.*");
  expect(r.code).toBe(0);
  const all = JSON.parse((await cli("inspect", "--json", ckpt)).stdout);
  const want = all.tensors.map((t: { name: string }) => t.name).filter((n: string) => !n.startsWith("optimizer."));
  expect(want.length).toBeGreaterThan(0);
  expect(want.length).toBeLessThan(all.tensors.length);
  const written = JSON.parse((await cli("inspect", "--json", out)).stdout);
  expect(written.tensors.map((t: { name: string }) => t.name).sort()).toEqual([...want].sort());
  expect(r.stderr).not.toMatch(/optimizer/);
  const none = await cli("convert", ckpt, join(dir, "none.safetensors"), "--filter", "nothing.*");
  expect([none.code, none.stderr]).toEqual([1, `error: NoTensors: none of the 16 tensors in ${ckpt} is kept by the filter: nothing to convert\n`]);
  expect(readdirSync(dir)).toEqual(["model.safetensors"]);
  rmSync(dir, { recursive: true });
});
