import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { open } from "../../src/checkpoint/open.ts";
import { openSharded } from "../../src/checkpoint/open.ts";
import { saveSharded } from "../../src/checkpoint/save.ts";
import { expected, fixture, sha256 } from "../support/fixtures.ts";

const SHARDED = fixture("sharded");
const INDEX = JSON.parse(readFileSync(join(SHARDED, "model.safetensors.index.json"), "utf8")) as {
  weight_map: Record<string, string>;
};

const tmp = () => mkdtempSync(join(tmpdir(), "tensormap-sharded-"));

/** A writable copy of the sharded fixture. */
function copyFixture(): string {
  const dir = tmp();
  cpSync(SHARDED, dir, { recursive: true });
  return dir;
}

async function codeOf(f: () => unknown): Promise<string> {
  try {
    await f();
  } catch (e) {
    return e instanceof SafetensorsError ? e.code : `not a SafetensorsError: ${e}`;
  }
  return "no error";
}

describe.each([
  ["its folder", SHARDED],
  ["its index file", join(SHARDED, "model.safetensors.index.json")],
])("the sharded fixture opened by %s", (_, path) => {
  const want = expected("sharded/expected.json");

  test("every tensor has the expected dtype, shape and bytes, and names its shard", async () => {
    const model = await openSharded(path);
    try {
      expect(model.keys()).toEqual(Object.keys(want).sort());
      for (const [name, w] of Object.entries(want)) {
        const t = model.tensor(name);
        expect([t.dtype, t.shape, t.bytes.byteLength, sha256(t.bytes)], name).toEqual([w.dtype, w.shape, w.nbytes, w.sha256]);
        const info = model.info(name);
        expect(info.file).toBe(INDEX.weight_map[name]);
        expect(info.dataOffsets[1] - info.dataOffsets[0]).toBe(w.nbytes);
      }
    } finally {
      model.close();
    }
  });

  test("offsetKeys goes shard by shard in each shard's file order; metadata comes from shard and index", async () => {
    const model = await openSharded(path);
    try {
      const perShard = await Promise.all(
        model.files.map(async (f) => {
          const shard = await open(join(SHARDED, f));
          const keys = shard.offsetKeys();
          shard.close();
          return keys;
        }),
      );
      expect(model.offsetKeys()).toEqual(perShard.flat());
      expect(model.files).toEqual([1, 2, 3].map((i) => `model-0000${i}-of-00003.safetensors`));
      expect(model.metadata).toEqual({ format: "pt" });
      expect(model.indexMetadata).toEqual({ total_size: 20736 });
      expect(model.backend).toBe((await open(join(SHARDED, model.files[0]!))).backend);
    } finally {
      model.close();
    }
  });
});

test("slices read through the right shard", async () => {
  const model = await openSharded(SHARDED);
  const whole = model.tensor("h.2.mlp.c_fc.weight");
  const rows = model.slice("h.2.mlp.c_fc.weight", [[1, 3], null]);
  expect(rows.shape).toEqual([2, 64]);
  expect(Array.from(rows.bytes)).toEqual(Array.from(whole.bytes.subarray(1 * 64 * 2, 3 * 64 * 2)));
  model.close();
});

test("unknown names are TensorNotFound; a closed checkpoint is Closed", async () => {
  const model = await openSharded(SHARDED);
  expect(model.has("wte.weight")).toBe(true);
  expect(model.has("nope")).toBe(false);
  expect(await codeOf(() => model.tensor("nope"))).toBe("TensorNotFound");
  expect(await codeOf(() => model.prefetch(["wte.weight", "nope"]))).toBe("TensorNotFound");
  await expect(model.prefetch()).resolves.toBeUndefined();
  model.close();
  model.close();
  expect(await codeOf(() => model.tensor("wte.weight"))).toBe("Closed");
});

test("shards open lazily: a broken shard fails only when a tensor in it is used", async () => {
  const dir = copyFixture();
  truncateSync(join(dir, "model-00003-of-00003.safetensors"), 400); // header intact, data cut short
  const model = await openSharded(dir);
  expect(sha256(model.tensor("wte.weight").bytes)).toBe(expected("sharded/expected.json")["wte.weight"]!.sha256);
  expect(await codeOf(() => model.tensor("h.2.mlp.c_fc.weight"))).toBe("MetadataIncompleteBuffer");
  expect(await codeOf(() => model.offsetKeys())).toBe("MetadataIncompleteBuffer");
  // Which of the shards is broken, said once.
  expect(() => model.tensor("h.2.mlp.c_fc.weight")).toThrow(/^model-00003-of-00003\.safetensors: tensors cover \d+ data bytes but the file holds \d+$/);
  model.close();
  rmSync(dir, { recursive: true });
});

test("a missing shard is MissingShard at open", async () => {
  const dir = copyFixture();
  rmSync(join(dir, "model-00002-of-00003.safetensors"));
  expect(await codeOf(() => openSharded(dir))).toBe("MissingShard");
  await expect(openSharded(dir)).rejects.toThrow(/model-00002-of-00003\.safetensors/);
  rmSync(dir, { recursive: true });
});

test("a weight_map entry its shard lacks is InvalidIndex when that shard opens", async () => {
  const dir = copyFixture();
  const index = { ...INDEX, weight_map: { ...INDEX.weight_map, ghost: "model-00001-of-00003.safetensors" } };
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify(index));
  const model = await openSharded(dir);
  expect(model.keys()).toContain("ghost");
  expect(await codeOf(() => model.tensor("ghost"))).toBe("InvalidIndex");
  expect(await codeOf(() => model.tensor("wte.weight"))).toBe("InvalidIndex");
  expect(await codeOf(() => model.tensor("h.2.mlp.c_fc.weight"))).toBe("no error");
  await expect(Promise.resolve().then(() => model.tensor("ghost"))).rejects.toThrow(/"ghost".*model-00001-of-00003/);
  model.close();
  rmSync(dir, { recursive: true });
});

test("an index pointing outside its folder is refused before anything opens", async () => {
  const dir = tmp();
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "../../etc/passwd" } }));
  expect(await codeOf(() => openSharded(dir))).toBe("InvalidIndex");
  expect(await codeOf(() => openSharded(join(dir, "nothing-here")))).toBe("ENOENT");
  rmSync(dir, { recursive: true });
});

test("a folder opens through the first of the Hugging Face names it holds, safetensors before pickle", async () => {
  const dir = tmp();
  const empty = await openSharded(dir).catch((e: SafetensorsError) => e);
  expect(empty).toBeInstanceOf(SafetensorsError);
  expect((empty as SafetensorsError).code).toBe("ENOENT");
  expect((empty as SafetensorsError).message).toMatch(/holds no checkpoint \(none of model\.safetensors\.index\.json, model\.safetensors, pytorch_model\.bin\.index\.json, pytorch_model\.bin\)$/);

  cpSync(fixture("torch/pytorch_model.bin"), join(dir, "pytorch_model.bin"));
  const want = expected("torch/pytorch_model.expected.json");
  const pickle = await openSharded(dir);
  expect(pickle.files).toEqual(["pytorch_model.bin"]);
  expect(pickle.keys()).toEqual(Object.keys(want).sort());
  for (const [name, e] of Object.entries(want)) {
    expect(pickle.info(name).file).toBe("pytorch_model.bin");
    expect(sha256(pickle.tensor(name).bytes)).toBe(e.sha256);
  }
  pickle.close();

  cpSync(fixture("safetensors/tiny-gpt2.safetensors"), join(dir, "model.safetensors"));
  const preferred = await openSharded(dir);
  expect(preferred.files).toEqual(["model.safetensors"]);
  expect(preferred.keys()).toEqual(Object.keys(expected("safetensors/tiny-gpt2.expected.json")).sort());
  preferred.close();
  // A file that is not an index is a checkpoint of one shard.
  using pickleFile = await openSharded(join(dir, "pytorch_model.bin"));
  expect([pickleFile.files, pickleFile.indexMetadata, pickleFile.keys()]).toEqual([["pytorch_model.bin"], null, Object.keys(want).sort()]);
  rmSync(dir, { recursive: true });
});

describe("saveSharded", () => {
  const f32 = (n: number, start: number) => Float32Array.from({ length: n }, (_, i) => start + i);
  const tensors = new Map([
    ["b.weight", { dtype: "F32" as const, shape: [4], data: f32(4, 0) }], // 16 bytes
    ["10", { dtype: "F32" as const, shape: [2, 2], data: f32(4, 10) }], // 16
    ["a.big", { dtype: "F32" as const, shape: [16], data: f32(16, 100) }], // 64, over the limit
    ["c", { dtype: "I8" as const, shape: [3], data: new Int8Array([1, -2, 3]) }], // 3
    ["__proto__", { dtype: "U8" as const, shape: [], data: new Uint8Array([9]) }], // 1
  ]);

  test("splits greedily, names the shards, writes the index, and reads back", async () => {
    const dir = tmp();
    const written = await saveSharded(dir, tensors, { maxShardSize: "40B", metadata: { format: "pt" } });
    const names = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
    expect(written).toEqual([...names, "model.safetensors.index.json"].map((n) => join(dir, n)));
    expect(readdirSync(dir).sort()).toEqual([...names, "model.safetensors.index.json"].sort());
    const text = readFileSync(join(dir, "model.safetensors.index.json"), "utf8");
    const order: [string, string][] = [["b.weight", names[0]!], ["10", names[0]!], ["a.big", names[1]!], ["c", names[2]!], ["__proto__", names[2]!]];
    // The file lists weight_map in insertion order, even "10" (JSON.parse would move it first).
    expect(order.map(([n]) => text.indexOf(`"${n}":`))).toEqual(order.map(([n]) => text.indexOf(`"${n}":`)).sort((a, b) => a - b));
    const index = JSON.parse(text);
    expect(index.metadata).toEqual({ total_size: 100 });
    expect(Object.entries(index.weight_map).sort()).toEqual(order.sort());
    const model = await openSharded(dir);
    expect(model.keys().sort()).toEqual([...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const got = model.tensor(name);
      expect([got.dtype, got.shape], name).toEqual([t.dtype, t.shape]);
      expect(Array.from(got.bytes)).toEqual(Array.from(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
    }
    for (const f of model.files) expect(model.shard(f).metadata).toEqual({ format: "pt" });
    model.close();
    rmSync(dir, { recursive: true });
  });

  test("one shard is model.safetensors with no index, and a new save clears the previous one", async () => {
    const dir = tmp();
    writeFileSync(join(dir, "notes.txt"), "mine");
    await saveSharded(dir, tensors, { maxShardSize: 40 });
    expect(await saveSharded(dir, tensors)).toEqual([join(dir, "model.safetensors")]);
    expect(readdirSync(dir).sort()).toEqual(["model.safetensors", "notes.txt"]);
    const model = await openSharded(dir);
    expect(model.files).toEqual(["model.safetensors"]);
    expect(model.indexMetadata).toBeNull();
    expect(model.info("c").file).toBe("model.safetensors");
    expect(Array.from(model.tensor("c").bytes)).toEqual([1, 254, 3]);
    model.close();
    await saveSharded(dir, tensors, { maxShardSize: "0.04kB" });
    expect(existsSync(join(dir, "model.safetensors"))).toBe(false);
    expect(readdirSync(dir)).toContain("notes.txt");
    rmSync(dir, { recursive: true });
  });

  test("a plain object's insertion order is kept (integer-like names aside, as JavaScript orders them)", async () => {
    const dir = tmp();
    await saveSharded(dir, { z: tensors.get("c")!, y: tensors.get("c")! }, { maxShardSize: 3 });
    const index = JSON.parse(readFileSync(join(dir, "model.safetensors.index.json"), "utf8"));
    expect(index.weight_map).toEqual({ z: "model-00001-of-00002.safetensors", y: "model-00002-of-00002.safetensors" });
    rmSync(dir, { recursive: true });
  });

  test("a bad size is InvalidArgument and writes nothing", async () => {
    const dir = join(tmp(), "out");
    expect(await codeOf(() => saveSharded(dir, tensors, { maxShardSize: "5 potatoes" }))).toBe("InvalidArgument");
    expect(existsSync(dir)).toBe(false);
  });
});

test("a saveSharded that fails part-way leaves the earlier checkpoint whole", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-shard-"));
  const u8 = (n: number, v: number) => ({ dtype: "U8" as const, shape: [n], data: new Uint8Array(n).fill(v) });
  await saveSharded(dir, { a: u8(8, 1), b: u8(8, 2) }, { maxShardSize: 8 });
  const before = Object.fromEntries(readdirSync(dir).map((f) => [f, sha256(readFileSync(join(dir, f)))]));
  // The second shard's tensor is bad: nothing may be written, not even the first shard.
  const bad = { dtype: "U8" as const, shape: [9], data: new Uint8Array(8) };
  await expect(saveSharded(dir, { x: u8(8, 3), y: bad }, { maxShardSize: 8 })).rejects.toMatchObject({ code: "InvalidTensor" });
  await expect(saveSharded(dir, { x: u8(8, 3), y: u8(8, 4), z: bad }, { maxShardSize: 8 })).rejects.toMatchObject({ code: "InvalidTensor" });
  expect(Object.fromEntries(readdirSync(dir).map((f) => [f, sha256(readFileSync(join(dir, f)))]))).toEqual(before);
  using model = await openSharded(dir);
  expect(Array.from(model.tensor("b").bytes)).toEqual(new Array(8).fill(2));
  rmSync(dir, { recursive: true });
});
