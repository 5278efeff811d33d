import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { cli } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";

test("good files and sharded checkpoints: one ok line each, exit 0", async () => {
  const paths = [fixture("sharded"), fixture("sharded/model.safetensors.index.json"), fixture("safetensors/all-dtypes.safetensors")];
  const r = await cli("verify", ...paths);
  expect(r.code).toBe(0);
  expect(r.stdout.split("\n")).toEqual([`${paths[0]}: ok (17 tensors)`, `${paths[1]}: ok (17 tensors)`, `${paths[2]}: ok (22 tensors)`, ""]);
});

test("one bad path among good ones: its line names the code, exit 1, the rest still checked", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-verify-"));
  const sharded = join(dir, "sharded");
  cpSync(fixture("sharded"), sharded, { recursive: true });
  rmSync(join(sharded, "model-00002-of-00003.safetensors"));
  const trailing = join(dir, "trailing.safetensors");
  cpSync(fixture("safetensors/tiny-gpt2.safetensors"), trailing);
  writeFileSync(trailing, "x", { flag: "a" });
  const good = fixture("safetensors/tiny-gpt2.safetensors");

  const r = await cli("verify", sharded, trailing, good);
  expect(r.code).toBe(1);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines).toHaveLength(3);
  expect(lines[0]).toMatch(new RegExp(`^${sharded}: MissingShard: .*model-00002-of-00003\\.safetensors`));
  expect(lines[1]).toMatch(new RegExp(`^${trailing}: MetadataIncompleteBuffer: `));
  expect(lines[2]).toBe(`${good}: ok (17 tensors)`);
  rmSync(dir, { recursive: true });
});

test("a shard that lacks a tensor the index names fails verify", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-verify-"));
  cpSync(fixture("sharded"), dir, { recursive: true });
  const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
  index.weight_map["lm_head.weight"] = "model-00003-of-00003.safetensors";
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
  const r = await cli("verify", dir);
  expect(r.code).toBe(1);
  expect(r.stdout).toMatch(/: InvalidIndex: .*"lm_head\.weight".*model-00003-of-00003\.safetensors/);
  rmSync(dir, { recursive: true });
});

test("a tensor a shard holds but the index leaves out fails verify (a loader following the index would miss it)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-verify-"));
  cpSync(fixture("sharded"), dir, { recursive: true });
  const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
  const file = index.weight_map["wte.weight"];
  delete index.weight_map["wte.weight"];
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
  const r = await cli("verify", dir);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe(`${dir}: InvalidIndex: ${file} holds "wte.weight", but the index does not name it\n`);
  rmSync(dir, { recursive: true });
});

test("--json: one object per path, in order, with the code and the message of a failure", async () => {
  const good = fixture("sharded");
  const gone = join(tmpdir(), "tensormap-verify-missing", "x.safetensors");
  const r = await cli("verify", "--json", good, gone);
  expect(r.code).toBe(1);
  expect(JSON.parse(r.stdout)).toEqual([
    { path: good, ok: true, tensors: 17 },
    { path: gone, ok: false, code: "ENOENT", message: `cannot open ${gone}: no such file or directory` },
  ]);
  expect(r.stderr).toBe("");
});
