import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { open, SafetensorsError, save, serialize, type TensorData } from "../../src/index.ts";
import { unwritableFolders } from "../io/commit-fixture.ts";
import { fixture } from "../support/fixtures.ts";

async function readAll(path: string) {
  using file = await open(path);
  const tensors = new Map<string, TensorData>();
  for (const name of file.offsetKeys()) {
    const t = file.tensor(name);
    tensors.set(name, { dtype: t.dtype, shape: t.shape, data: t.bytes.slice() });
  }
  return { tensors, metadata: file.metadata };
}

describe("byte-identical to the reference writer", () => {
  test.each(["safetensors/tiny-gpt2.safetensors", ...[1, 2, 3].map((i) => `sharded/model-0000${i}-of-00003.safetensors`)])("%s", async (rel) => {
    const { tensors, metadata } = await readAll(fixture(rel));
    expect(Object.keys(metadata ?? {}).length).toBeLessThanOrEqual(1);
    expect(Buffer.from(serialize(tensors, metadata)).equals(readFileSync(fixture(rel)))).toBe(true);
  });

  test("all dtypes: same layout and data, metadata keys sorted", async () => {
    const path = fixture("safetensors/all-dtypes.safetensors");
    const { tensors, metadata } = await readAll(path);
    const ours = serialize(tensors, metadata);
    const ref = readFileSync(path);
    const n = Number(ref.readBigUInt64LE(0));
    expect(Buffer.from(ours.subarray(ours.byteLength - (ref.byteLength - 8 - n))).equals(ref.subarray(8 + n))).toBe(true);
    const json = new TextDecoder().decode(ours.subarray(8, ours.byteLength - (ref.byteLength - 8 - n)));
    expect(json.startsWith('{"__metadata__":{"format":"pt","source":"reference writer"},"uint64":')).toBe(true);
  });
});

describe("round trip", () => {
  test("every dtype, scalar and empty tensors survive save and open", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-"));
    const { tensors } = await readAll(fixture("safetensors/all-dtypes.safetensors"));
    const path = join(dir, "rt.safetensors");
    await save(path, tensors, { b: "2", a: "1" });
    using file = await open(path);
    expect({ ...file.metadata }).toEqual({ a: "1", b: "2" });
    for (const [name, t] of tensors) {
      const got = file.tensor(name);
      expect([got.dtype, got.shape, Array.from(got.bytes)]).toEqual([t.dtype, t.shape, Array.from(t.data as Uint8Array)]);
    }
  });

  test("prototype names are ordinary names", async () => {
    const names = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"];
    const bytes = serialize(new Map(names.map((n, i) => [n, { dtype: "U8", shape: [1], data: new Uint8Array([i]) }])), { __proto__: "x" } as never);
    const dir = mkdtempSync(join(tmpdir(), "tensormap-"));
    writeFileSync(join(dir, "p.safetensors"), bytes);
    using file = await open(join(dir, "p.safetensors"));
    expect(file.keys()).toEqual([...names].sort());
    names.forEach((n, i) => expect(file.tensor(n).bytes[0]).toBe(i));
  });

  test("metadata without tensors writes a readable file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-"));
    await save(join(dir, "m.safetensors"), {}, { format: "pt" });
    using file = await open(join(dir, "m.safetensors"));
    expect(file.keys()).toEqual([]);
    expect(file.metadata?.format).toBe("pt");
  });
});

describe("refuses what the reference wrongly accepts", () => {
  const t = { dtype: "F32" as const, shape: [2], data: new Float32Array(2) };
  test.each([
    ["a tensor named __metadata__", () => serialize({ __metadata__: t })],
    ["NUL in a name", () => serialize({ "a\0b": t })],
    ["NUL in metadata", () => serialize({ a: t }, { k: "v\0" })],
    ["a lone surrogate", () => serialize({ "\ud800": t })],
    ["data shorter than shape × dtype", () => serialize({ a: { ...t, shape: [3] } })],
    ["F4 with an odd count", () => serialize({ a: { dtype: "F4", shape: [3], data: new Uint8Array(2) } })],
    ["an unknown dtype", () => serialize({ a: { dtype: "F12" as never, shape: [1], data: new Uint8Array(2) } })],
  ])("%s", (_, write) => {
    expect(write).toThrow(expect.objectContaining({ name: "SafetensorsError", code: "InvalidTensor" }));
  });
});

test("save is atomic and safe over a file that is open", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-"));
  const path = join(dir, "a.safetensors");
  await save(path, { x: { dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) } });
  using before = await open(path);
  await save(path, { x: { dtype: "U8", shape: [3], data: new Uint8Array([7, 8, 9]) } });
  await expect(save(path, { x: { dtype: "U8", shape: [4], data: new Uint8Array(3) } })).rejects.toThrow();
  expect(Array.from(before.tensor("x").bytes)).toEqual([1, 2, 3]);
  using after = await open(path);
  expect(Array.from(after.tensor("x").bytes)).toEqual([7, 8, 9]);
  expect(readdirSync(dir)).toEqual(["a.safetensors"]);
});

describe("what save leaves on disk", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-save-"));
  const unwritable = unwritableFolders(dir);
  afterAll(() => {
    unwritable.release();
    rmSync(dir, { recursive: true, force: true });
  });
  const one = { x: { dtype: "U8" as const, shape: [1], data: new Uint8Array([5]) } };

  test.each([0o600, 0o640, 0o604, 0o755].map((m) => [m.toString(8), m] as const))("a file it replaces keeps its mode (%s)", async (_, mode) => {
    const path = join(dir, `kept-${mode.toString(8)}.safetensors`);
    writeFileSync(path, "old");
    chmodSync(path, mode);
    await save(path, one);
    expect(statSync(path).mode & 0o777).toBe(mode);
    expect(readFileSync(path).byteLength).toBeGreaterThan(8);
  });

  test.each([0o022, 0o027, 0o002, 0o077].map((m) => [m.toString(8), m] as const))("a new file gets 0666 less the umask (%s)", async (_, umask) => {
    const path = join(dir, `new-${umask.toString(8)}.safetensors`);
    const before = process.umask(umask);
    try {
      await save(path, one);
    } finally {
      process.umask(before);
    }
    expect(statSync(path).mode & 0o777).toBe(0o666 & ~umask);
  });

  test.each(unwritable.folders.map((f) => [f.path, f.codes] as const))("into unwritable %s: the real errno (%j) as a SafetensorsError, nothing left", async (folder, codes) => {
    const before = readdirSync(folder);
    const e = await save(join(folder, "m.safetensors"), one).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(SafetensorsError);
    expect(codes).toContain((e as SafetensorsError).code);
    expect((e as SafetensorsError).message).toContain(join(folder, "m.safetensors"));
    expect(readdirSync(folder)).toEqual(before);
  });
});
