import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { openRead } from "../../src/io/read.ts";
import { describeLeaf, openPytorchLayout } from "../../src/pickle/layout.ts";

const dir = path.resolve(process.cwd(), "../shared/fixtures/torch");

interface Expected {
  dtype: string;
  shape: number[];
  nbytes: number;
  sha256: string;
}

function load(file: string) {
  const source = openRead(path.join(dir, file));
  const layout = openPytorchLayout(source);
  const bytes = (name: string): Uint8Array => {
    const e = layout.entries.get(name)!;
    return e.gather ? e.gather(source) : source.bytes(e.start, e.byteLength);
  };
  return { source, layout, bytes };
}

const cases: Array<[string, string, "zip" | "legacy"]> = [
  ["state-dict.pt", "state-dict", "zip"],
  ["state-dict-legacy.pt", "state-dict-legacy", "legacy"],
  ["torch113-zip.pt", "torch113", "zip"],
  ["torch113-legacy.pt", "torch113", "legacy"],
  ["pytorch_model.bin", "pytorch_model", "zip"],
];

describe("torch.save fixtures", () => {
  test.each(cases)("%s matches %s.expected.json", (file, expectedName, container) => {
    const expected: Record<string, Expected> = JSON.parse(readFileSync(path.join(dir, `${expectedName}.expected.json`), "utf8"));
    const { source, layout, bytes } = load(file);
    expect(layout.container).toBe(container);
    expect(layout.order).toEqual(Object.keys(expected));
    for (const [name, e] of Object.entries(expected)) {
      const entry = layout.entries.get(name)!;
      expect({ name, dtype: entry.dtype, shape: entry.shape, nbytes: entry.byteLength }).toEqual({ name, dtype: e.dtype, shape: e.shape, nbytes: e.nbytes });
      expect(createHash("sha256").update(bytes(name)).digest("hex"), name).toBe(e.sha256);
    }
    source.close();
  });

  test("contiguous tensors are ranges of the file, views are gathered", () => {
    const { source, layout } = load("state-dict.pt");
    for (const name of ["embed.weight", "fc.bias", "view.rows"]) expect(layout.entries.get(name)!.gather, name).toBeUndefined();
    for (const name of ["view.transposed", "view.strided"]) expect(layout.entries.get(name)!.gather, name).toBeTypeOf("function");
    // The rows view starts inside its storage: its range is offset from the storage's record.
    const rows = layout.entries.get("view.rows")!;
    expect(rows.dataOffsets).toEqual([rows.start, rows.start + rows.byteLength]);
    source.close();
  });

  test("tied weights alias the same bytes", () => {
    const { source, layout } = load("state-dict.pt");
    expect(layout.entries.get("lm_head.weight")!.start).toBe(layout.entries.get("embed.weight")!.start);
    source.close();
    const t = load("torch113-zip.pt");
    expect(t.layout.entries.get("tied")!.start).toBe(t.layout.entries.get("enc.weight")!.start);
    t.source.close();
  });

  test("a training checkpoint flattens to dotted names and keeps non-tensor leaves", () => {
    const expected: Record<string, Expected> = JSON.parse(readFileSync(path.join(dir, "training-checkpoint.model.expected.json"), "utf8"));
    const { source, layout, bytes } = load("training-checkpoint.pt");
    for (const [name, e] of Object.entries(expected)) {
      expect(createHash("sha256").update(bytes(name)).digest("hex"), name).toBe(e.sha256);
    }
    expect(layout.order).toContain("optimizer.state.0.exp_avg");
    expect(layout.order).toContain("optimizer.state.3.step");
    expect(layout.entries.get("optimizer.state.0.exp_avg")!.shape).toEqual([3, 4]);
    const leaves = Object.fromEntries([...layout.leaves].map(([k, v]) => [k, describeLeaf(v)]));
    expect(leaves).toMatchObject({
      epoch: "3",
      best_loss: "0.25",
      name: '"run-1"',
      tags: '["a", "b"]',
      step_tuple: "(1, 2)",
      "optimizer.param_groups.0.betas": "(0.9, 0.999)",
      "optimizer.param_groups.0.params": "[0, 1, 2, 3]",
      "optimizer.param_groups.0.foreach": "None",
    });
    source.close();
  });
});
