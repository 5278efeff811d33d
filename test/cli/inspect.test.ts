import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serialize } from "../../src/format/writer.ts";
import { statePickle, torchZip } from "../pickle/build.ts";
import { expect, test } from "vitest";
import { open } from "../../src/checkpoint/open.ts";
import { cli } from "../support/cli.ts";
import { expected, fixture } from "../support/fixtures.ts";

const SHARDED = fixture("sharded");
const weightMap: Record<string, string> = JSON.parse(readFileSync(join(SHARDED, "model.safetensors.index.json"), "utf8")).weight_map;

/** The fixture's tensors shard by shard, each shard in its file order (offsets ascending). */
async function fileOrder(): Promise<string[]> {
  const names: string[] = [];
  for (const shard of [...new Set(Object.values(weightMap))].sort()) {
    const file = await open(join(SHARDED, shard));
    names.push(...file.offsetKeys());
    file.close();
  }
  return names;
}

test("--json on a sharded folder: metadata and every tensor in file order, with its shard", async () => {
  const r = await cli("inspect", "--json", SHARDED);
  expect(r.code).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect(Object.keys(doc)).toEqual(["metadata", "index_metadata", "tensors"]);
  expect(doc.metadata).toEqual({ format: "pt" });
  expect(doc.index_metadata).toEqual({ total_size: 20736 });
  const want = expected("sharded/expected.json");
  expect(doc.tensors.map((t: { name: string }) => t.name)).toEqual(await fileOrder());
  for (const t of doc.tensors) {
    expect(Object.keys(t)).toEqual(["name", "dtype", "shape", "data_offsets", "file"]);
    expect([t.dtype, t.shape, t.data_offsets[1] - t.data_offsets[0], t.file]).toEqual([
      want[t.name]!.dtype, want[t.name]!.shape, want[t.name]!.nbytes, weightMap[t.name],
    ]);
  }
  // Within each shard the offsets are contiguous from 0.
  for (const shard of new Set(Object.values(weightMap))) {
    const offsets = doc.tensors.filter((t: { file: string }) => t.file === shard).map((t: { data_offsets: number[] }) => t.data_offsets);
    offsets.forEach((o: number[], i: number) => expect(o[0]).toBe(i === 0 ? 0 : offsets[i - 1][1]));
  }
});

test("--json on the index file matches --json on its folder", async () => {
  const [a, b] = [await cli("inspect", "--json", SHARDED), await cli("inspect", "--json", join(SHARDED, "model.safetensors.index.json"))];
  expect(a.stdout).toBe(b.stdout);
});

test("--json on one file: no shard names, offsets as in the header", async () => {
  const path = fixture("safetensors/all-dtypes.safetensors");
  const doc = JSON.parse((await cli("inspect", path, "--json")).stdout);
  expect(Object.keys(doc)).toEqual(["metadata", "tensors"]);
  const file = await open(path);
  expect(doc.metadata).toEqual(file.metadata);
  expect(doc.tensors).toEqual(
    file.offsetKeys().map((name) => ({ name, dtype: file.info(name).dtype, shape: file.info(name).shape, data_offsets: file.info(name).dataOffsets })),
  );
  file.close();
});

test("the table lists every tensor, then totals, the dtype breakdown and metadata", async () => {
  const r = await cli("inspect", SHARDED);
  expect(r.code).toBe(0);
  const lines = r.stdout.split("\n");
  expect(lines[0]).toMatch(/^name\s+dtype\s+shape\s+size\s+file$/);
  expect(lines.find((l) => l.startsWith("h.2.mlp.c_fc.weight "))).toMatch(/^h\.2\.mlp\.c_fc\.weight\s+BF16\s+\[16, 64\]\s+2\.05 kB\s+model-00003-of-00003\.safetensors$/);
  expect(r.stdout).toContain("17 tensors, 10,176 parameters, 20.7 kB (20,736 bytes) in 3 shards");
  expect(r.stdout).toMatch(/^\s+F32\s+6 tensors\s+192 parameters\s+768 B$/m);
  expect(r.stdout).toMatch(/^\s+BF16\s+11 tensors\s+9,984 parameters\s+20\.0 kB$/m);
  expect(r.stdout).toContain("metadata: format=pt");
  expect(r.stdout).toContain('index metadata: {"total_size":20736}');
});

test("the dtype breakdown says 1 tensor and 1 parameter, with the counts right-aligned", async () => {
  const r = await cli("inspect", fixture("torch/torch113-zip.pt"));
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(
    [
      "7 tensors, 48 parameters, 182 B (182 bytes)",
      "  F32   4 tensors  40 parameters  160 B",
      "  F16   1 tensor    4 parameters    8 B",
      "  BF16  1 tensor    3 parameters    6 B",
      "  I64   1 tensor    1 parameter     8 B",
    ].join("\n"),
  );
});

test("--help documents every key --json writes", async () => {
  const help = (await cli("inspect", "--help")).stdout;
  const keys = new Set<string>();
  for (const path of [SHARDED, fixture("torch/training-checkpoint.pt")]) {
    for (const key of Object.keys(JSON.parse((await cli("inspect", "--json", path)).stdout))) keys.add(key);
  }
  expect([...keys].sort()).toEqual(["index_metadata", "metadata", "tensors", "values"]);
  for (const key of keys) expect(help).toContain(`"${key}"`);
});

test("a very long metadata value is shortened in the table and whole in --json", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-inspect-"));
  const path = join(dir, "long.safetensors");
  const config = "x".repeat(4990) + "THE-END";
  writeFileSync(path, serialize({ w: { dtype: "F32", shape: [1], data: new Float32Array([1]) } }, { config, short: "kept" }));
  const table = (await cli("inspect", path)).stdout;
  expect(table).toContain(`metadata: config=${"x".repeat(200)}… (4,997 characters), short=kept\n`);
  expect(table).not.toContain("THE-END");
  expect(JSON.parse((await cli("inspect", "--json", path)).stdout).metadata.config).toBe(config);
  rmSync(dir, { recursive: true });
});

test("one tensor is 1 tensor, in inspect, verify and convert", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-inspect-"));
  const pt = join(dir, "one.pt");
  writeFileSync(pt, torchZip(statePickle([{ name: "w", storage: "FloatStorage", key: "0", numel: 1, shape: [1] }]), { "0": new Uint8Array(4) }));
  expect((await cli("inspect", pt)).stdout).toContain("\n1 tensor, 1 parameter, 4 B (4 bytes)\n");
  expect((await cli("verify", pt)).stdout).toBe(`${pt}: ok (1 tensor)\n`);
  expect((await cli("convert", pt, join(dir, "one.safetensors"))).stdout).toMatch(/^1 tensor, 4 B in /);
  rmSync(dir, { recursive: true });
});

test("--json on PyTorch: data_offsets are absolute in the file, as --help says", async () => {
  const path = fixture("torch/pytorch_model.bin");
  const doc = JSON.parse((await cli("inspect", "--json", path)).stdout);
  const bytes = readFileSync(path);
  const file = await open(path);
  for (const t of doc.tensors) {
    const [begin, end] = t.data_offsets;
    expect(new Uint8Array(bytes.subarray(begin, end))).toEqual(new Uint8Array(file.tensor(t.name).bytes));
  }
  file.close();
  expect((await cli("inspect", "--help")).stdout.replace(/\s+/g, " ")).toContain("for PyTorch absolute in the file");
});

test("--filter keeps the names any GLOB matches, less !GLOB ones, in the table, the totals and --json", async () => {
  const r = await cli("inspect", SHARDED, "--filter", "h.0.*", "--filter=!*.bias");
  expect(r.code).toBe(0);
  const names = r.stdout.split("\n\n")[0]!.split("\n").slice(1).map((l) => l.split(" ")[0]);
  const want = (await fileOrder()).filter((n) => n.startsWith("h.0.") && !n.endsWith(".bias"));
  expect(names).toEqual(want);
  expect(r.stdout).toContain(`${want.length} of 17 tensors (--filter), `);
  const doc = JSON.parse((await cli("inspect", "--json", SHARDED, "--filter", "h.0.*", "--filter", "!*.bias")).stdout);
  expect(doc.tensors.map((t: { name: string }) => t.name)).toEqual(want);
  // Values are names too: leaving the optimizer out leaves its values out.
  const ckpt = JSON.parse((await cli("inspect", "--json", fixture("torch/training-checkpoint.pt"), "--filter", "!optimizer.*")).stdout);
  expect(Object.keys(ckpt.values).some((k) => k.startsWith("optimizer."))).toBe(false);
  expect(ckpt.values.epoch).toBe(3);
  expect(ckpt.tensors.some((t: { name: string }) => t.name.startsWith("optimizer."))).toBe(false);
  expect((await cli("inspect", SHARDED, "--filter", "")).stderr).toMatch(/^error: --filter wants a non-empty GLOB\n/);
});
