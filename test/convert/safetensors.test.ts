import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { convert } from "../../src/convert/convert.ts";
import { save } from "../../src/format/writer.ts";
import { cli } from "../support/cli.ts";
import { expected, fixture, sha256 } from "../support/fixtures.ts";

let dir: string;
beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), "tensormap-convert-st-"))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ALL_DTYPES = fixture("safetensors/all-dtypes.safetensors");
const FLOATS = ["F64", "F32", "F16", "BF16"];

/** Every tensor's dtype, shape and bytes' sha256, by name. */
async function contents(path: string) {
  await using model = await openCheckpoint(path);
  return Object.fromEntries(model.keys().map((name) => {
    const t = model.tensor(name);
    return [name, { dtype: t.dtype, shape: t.shape, sha256: sha256(t.bytes) }];
  }));
}

test("--dtype f16 casts the four float dtypes (values as f16 rounds them) and keeps every other tensor byte for byte", async () => {
  const out = join(dir, "f16.safetensors");
  const r = await cli("convert", ALL_DTYPES, out, "--dtype", "f16");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(new RegExp(`^22 tensors \\(4 cast to F16\\), [0-9.]+ [kM]?B in \\d+\\.\\d+ m?s → ${out}\n$`));
  const before = await contents(ALL_DTYPES);
  const after = await contents(out);
  const want = expected("safetensors/all-dtypes.expected.json");
  expect(Object.keys(after).sort()).toEqual(Object.keys(before).sort());
  for (const [name, t] of Object.entries(before)) {
    if (FLOATS.includes(t.dtype)) expect(after[name]!.dtype, name).toBe("F16");
    else expect(after[name], name).toEqual(t);
  }
  await using file = await openCheckpoint(out);
  // f16's own values where the source is exactly representable or rounds as f16 does: 0.333 → 0.3330078125,
  // 65504 stays, and bf16's 65536 (past f16's max + half an ulp, 65520) becomes inf.
  const f16 = want.float16!.values as number[];
  expect([...file.tensor("float32").toFloat32()]).toEqual(f16);
  expect([...file.tensor("float64").toFloat32()]).toEqual(f16);
  const fromBf16 = [...file.tensor("bfloat16").toFloat32()];
  expect(fromBf16[8]).toBe(Infinity);
  expect(Object.is(fromBf16[1], -0)).toBe(true);
  // The source's metadata, nothing added.
  expect(file.metadata).toEqual({ source: "reference writer", format: "pt" });
});

test("--dtype bf16 then f32 gives the bf16 values back exactly; integers untouched", async () => {
  const bf16 = join(dir, "bf16.safetensors");
  const f32 = join(dir, "f32.safetensors");
  expect((await convert(ALL_DTYPES, bf16, { dtype: "BF16" })).cast).toBe(5);
  const back = await convert(bf16, f32, { dtype: "F32" });
  expect(back.cast).toBe(6);
  await using file = await openCheckpoint(f32);
  const want = expected("safetensors/all-dtypes.expected.json");
  for (const name of ["float64", "float32", "float16", "bfloat16"]) {
    expect(file.tensor(name).dtype).toBe("F32");
    // f16's 0.3330078125 is a bf16 tie (to even, 0.33203125) and 65504 rounds up to 65536: the same as from f32.
    expect([...file.tensor(name).toFloat32()], name).toEqual(want.bfloat16!.values);
  }
  await using source = await openCheckpoint(ALL_DTYPES);
  expect(file.tensor("int64").bytes).toEqual(source.tensor("int64").bytes);
});

test("--max-shard-size re-shards one file into a folder: every tensor the same bytes, the index complete, metadata kept", async () => {
  const out = join(dir, "sharded");
  const r = await cli("convert", fixture("safetensors/tiny-gpt2.safetensors"), out, "--max-shard-size", "8kB");
  expect(r.code).toBe(0);
  const files = readdirSync(out).sort();
  expect(files.length).toBeGreaterThan(2);
  expect(files.at(-1)).toBe("model.safetensors.index.json");
  expect(files.slice(0, -1).every((f, i, all) => f === `model-${String(i + 1).padStart(5, "0")}-of-${String(all.length).padStart(5, "0")}.safetensors`)).toBe(true);
  expect(await contents(out)).toEqual(await contents(fixture("safetensors/tiny-gpt2.safetensors")));
  const index = JSON.parse(readFileSync(join(out, "model.safetensors.index.json"), "utf8"));
  expect(index.metadata.total_size).toBe(20736);
  await using model = await openCheckpoint(out);
  for (const f of model.files) expect(model.shard(f).metadata).toEqual({ format: "pt" });
  // A file OUT with --max-shard-size is a usage error: the output is a folder.
  expect((await cli("convert", fixture("safetensors/tiny-gpt2.safetensors"), join(dir, "x.safetensors"), "--max-shard-size", "8kB")).code).toBe(2);
});

test("a sharded folder re-shards in place, cast on the way; other files in the folder stay", async () => {
  const out = join(dir, "model");
  await convert(fixture("sharded"), out, { maxShardSize: "6kB" });
  writeFileSync(join(out, "config.json"), "{}");
  const before = readdirSync(out).filter((f) => f.endsWith(".safetensors")).length;
  const r = await convert(out, out, { dtype: "BF16", maxShardSize: "1GB" });
  expect(r.files.map((f) => f.slice(out.length + 1))).toEqual(["model.safetensors"]);
  expect(before).toBeGreaterThan(1);
  expect(readdirSync(out).sort()).toEqual(["config.json", "model.safetensors"]);
  const written = await contents(out);
  expect(Object.values(written).every((t) => t.dtype === "BF16")).toBe(true);
  expect(Object.keys(written).sort()).toEqual(Object.keys(await contents(fixture("sharded"))).sort());
});

test("NoTensors is still refused for safetensors, with and without --filter; nothing is written", async () => {
  const empty = join(dir, "empty.safetensors");
  await save(empty, {}, { note: "no tensors" });
  await expect(convert(empty, join(dir, "out.safetensors"), { dtype: "F16" })).rejects.toMatchObject({ code: "NoTensors" });
  const none = await cli("convert", ALL_DTYPES, join(dir, "none.safetensors"), "--filter", "nothing*");
  expect([none.code, none.stderr]).toEqual([1, `error: NoTensors: none of the 22 tensors in ${ALL_DTYPES} is kept by the filter: nothing to convert\n`]);
  expect(readdirSync(dir)).toEqual(["empty.safetensors"]);
});

test("--dtype takes bf16, f16 or f32 (any case), and nothing else", async () => {
  const bad = await cli("convert", ALL_DTYPES, join(dir, "x.safetensors"), "--dtype", "f64");
  expect([bad.code, bad.stderr.split("\n")[0]]).toEqual([2, "error: --dtype wants one of bf16, f16, f32, got 'f64'"]);
  const upper = await cli("convert", ALL_DTYPES, join(dir, "y.safetensors"), "--dtype", "BF16", "--filter", "float*");
  // float64, float32, float16 and the five float8s: the float8s are kept.
  expect(upper.stdout).toMatch(/^8 tensors \(3 cast to BF16\), /);
});

test("counts of one are singular: a filter that keeps the one tensor out, inspect's one byte", async () => {
  const one = join(dir, "one.safetensors");
  await save(one, { b: { dtype: "U8", shape: [1], data: new Uint8Array([7]) } });
  await expect(convert(one, join(dir, "out.safetensors"), { keep: () => false })).rejects.toMatchObject({
    code: "NoTensors",
    message: `the one tensor in ${one} is not kept by the filter: nothing to convert`,
  });
  expect((await cli("inspect", one)).stdout).toMatch(/^1 tensor, 1 parameter, 1 B \(1 byte\)$/m);
  expect((await cli("load", one)).stdout).toMatch(/^1 tensor, 1 B in /);
});
