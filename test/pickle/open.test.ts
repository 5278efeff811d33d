import { createHash } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test } from "vitest";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { open } from "../../src/checkpoint/open.ts";
import { describeLeaf } from "../../src/pickle/layout.ts";
import { hasFfi } from "../../ffi/runtime.ts";

const dir = path.resolve(process.cwd(), "../shared/fixtures");

test.each(["state-dict.pt", "state-dict-legacy.pt"])("open() serves %s through the same interface as safetensors", async (file) => {
  const expected = JSON.parse(readFileSync(path.join(dir, "torch", file.replace(".pt", ".expected.json")), "utf8"));
  using f = await open(path.join(dir, "torch", file));
  expect(f.metadata).toBeNull();
  expect(f.keys()).toEqual(Object.keys(expected).sort());
  for (const name of f.keys()) {
    const t = f.tensor(name);
    expect(createHash("sha256").update(t.bytes).digest("hex"), name).toBe(expected[name].sha256);
    expect(f.info(name)).toMatchObject({ dtype: expected[name].dtype, shape: expected[name].shape, byteLength: expected[name].nbytes });
  }
  // A transposed view decodes and slices like any tensor.
  const values = expected["view.transposed"].values as number[];
  expect(Array.from(f.tensor("view.transposed").toFloat32())).toEqual(values.map(Math.fround));
  expect(Array.from(f.slice("view.transposed", [[1, 2], null]).toFloat32())).toEqual(values.slice(6, 12).map(Math.fround));
  expect(f.leaves.size).toBe(0);
});

test("open() exposes a training checkpoint's non-tensor values as leaves", async () => {
  using f = await open(path.join(dir, "torch/training-checkpoint.pt"));
  expect(describeLeaf(f.leaves.get("epoch"))).toBe("3");
  expect(describeLeaf(f.leaves.get("optimizer.param_groups.0.lr"))).toBe("0.001");
  expect(f.keys()).toContain("model.0.weight");
});

test("safetensors files still open as before, with no leaves", async () => {
  using f = await open(path.join(dir, "safetensors/tiny-gpt2.safetensors"));
  expect(f.keys().length).toBeGreaterThan(0);
  expect(f.leaves.size).toBe(0);
});

test("open() refuses a malicious checkpoint with UnsafePickle", async () => {
  await expect(open(path.join(dir, "malicious/os-system.pt"))).rejects.toMatchObject({ code: "UnsafePickle" });
});

test.skipIf(!hasFfi())("under mmap, a contiguous pickle tensor is a view of the file, not a copy", async () => {
  using f = await open(path.join(dir, "torch/state-dict.pt"), { backend: "mmap" });
  expect(f.backend).toBe("mmap");
  const t = f.tensor("embed.weight");
  const [start] = f.info("embed.weight").dataOffsets;
  // One window over the whole (small) file: the view's offset in it is the tensor's offset in the file.
  expect(t.bytes.buffer.byteLength).toBe(f.source.size);
  expect(t.bytes.byteOffset).toBe(start);
  expect(f.tensor("lm_head.weight").bytes.buffer).toBe(t.bytes.buffer);
});

test("a folder of pickle shards (pytorch_model.bin.index.json) opens as a checkpoint, by folder or by index", async () => {
  const folder = mkdtempSync(path.join(tmpdir(), "tensormap-pickle-shards-"));
  try {
    const expected = JSON.parse(readFileSync(path.join(dir, "torch/pytorch_model.expected.json"), "utf8")) as Record<string, { sha256: string }>;
    copyFileSync(path.join(dir, "torch/pytorch_model.bin"), path.join(folder, "pytorch_model-00001-of-00001.bin"));
    const weightMap = Object.fromEntries(Object.keys(expected).map((k) => [k, "pytorch_model-00001-of-00001.bin"]));
    writeFileSync(path.join(folder, "pytorch_model.bin.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    for (const where of [folder, path.join(folder, "pytorch_model.bin.index.json")]) {
      using model = await openCheckpoint(where);
      expect(model.path).toBe(path.join(folder, "pytorch_model.bin.index.json"));
      expect(model.keys()).toEqual(Object.keys(expected).sort());
      for (const [name, e] of Object.entries(expected)) expect(createHash("sha256").update(model.tensor(name).bytes).digest("hex"), name).toBe(e.sha256);
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});
