import { describe, expect, test } from "vitest";
import { open } from "../../src/index.ts";
import { expected, fixture, num, sha256 } from "../support/fixtures.ts";

const cases = [
  ["all-dtypes", fixture("safetensors/all-dtypes.safetensors"), expected("safetensors/all-dtypes.expected.json")],
  ["tiny-gpt2", fixture("safetensors/tiny-gpt2.safetensors"), expected("safetensors/tiny-gpt2.expected.json")],
] as const;

describe.each(cases)("reference file %s", (_, path, want) => {
  test("every listed tensor has the expected dtype, shape and bytes", async () => {
    using file = await open(path);
    for (const [name, w] of Object.entries(want)) {
      const t = file.tensor(name);
      expect([t.dtype, t.shape, t.bytes.byteLength, sha256(t.bytes)]).toEqual([w.dtype, w.shape, w.nbytes, w.sha256]);
      expect(file.info(name).byteLength).toBe(w.nbytes);
    }
  });

  test("decoded values match torch's", async () => {
    using file = await open(path);
    for (const [name, w] of Object.entries(want)) {
      if (!w.values) continue;
      const got = Array.from(file.tensor(name).toFloat32());
      const flat = w.values.flat().map(num);
      expect(got.length, name).toBe(flat.length);
      flat.forEach((v, i) => {
        if (Number.isNaN(v)) expect(got[i], `${name}[${i}]`).toBeNaN();
        else expect(Object.is(got[i], Math.fround(v)) || got[i] === Math.fround(v), `${name}[${i}]: ${got[i]} vs ${v}`).toBe(true);
      });
    }
  });
});

test("keys() is sorted, offsetKeys() is file order, metadata is read", async () => {
  using file = await open(fixture("safetensors/all-dtypes.safetensors"));
  expect(file.keys()).toEqual([...file.keys()].sort());
  const offsets = file.offsetKeys().map((k) => file.info(k).dataOffsets[0]);
  expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
  expect(file.offsetKeys()[0]).toBe("uint64");
  expect({ ...file.metadata }).toEqual({ source: "reference writer", format: "pt" });
  expect(file.backend === "read" || file.backend === "mmap").toBe(true);
});

test("typed() gives the matching typed array", async () => {
  using file = await open(fixture("safetensors/all-dtypes.safetensors"));
  expect(file.tensor("float32").typed()).toBeInstanceOf(Float32Array);
  expect(file.tensor("int64").typed()).toBeInstanceOf(BigInt64Array);
  expect(Array.from(file.tensor("int64").typed() as BigInt64Array).map(Number)).toEqual([-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6]);
  expect(file.tensor("uint64").typed()).toBeInstanceOf(BigUint64Array);
  expect(file.tensor("bfloat16").typed()).toBeInstanceOf(Uint16Array);
  expect(file.tensor("scalar_f32").typed()).toEqual(new Float32Array([3.25]));
});

test("packed F4 decodes low nibble first", async () => {
  using file = await open(fixture("safetensors/all-dtypes.safetensors"));
  const t = file.tensor("f4_packed");
  expect(t.shape).toEqual([2, 4]);
  const lut = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
  const dec = (n: number) => (n & 8 ? -1 : 1) * lut[n & 7]!;
  const want = Array.from(t.bytes).flatMap((b) => [dec(b & 15), dec(b >> 4)]);
  expect(Array.from(t.toFloat32())).toEqual(want);
});

test("unknown names and closed files are named errors", async () => {
  const file = await open(fixture("safetensors/tiny-gpt2.safetensors"));
  expect(() => file.tensor("nope")).toThrow(expect.objectContaining({ code: "TensorNotFound" }));
  file.close();
  file.close();
  expect(() => file.tensor("wte.weight")).toThrow(expect.objectContaining({ code: "Closed" }));
});

test.each(["read", "auto"] as const)("chunks() pieces a tensor together exactly (%s backend)", async (backend) => {
  using file = await open(fixture("safetensors/tiny-gpt2.safetensors"), { backend });
  for (const name of file.keys()) {
    const pieces = [...file.chunks(name, 100)];
    expect(pieces.every((p) => p.byteLength <= 100)).toBe(true);
    expect(Buffer.concat(pieces).equals(file.tensor(name).bytes)).toBe(true);
  }
});

test("chunks() refuses a piece size that could never finish", async () => {
  using file = await open(fixture("safetensors/tiny-gpt2.safetensors"));
  for (const size of [0, -1, 1.5, NaN]) {
    expect(() => file.chunks("wte.weight", size).next()).toThrow(expect.objectContaining({ code: "InvalidArgument" }));
  }
});
