import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { describeLeaf, flatten } from "../../src/pickle/flatten.ts";
import { TorchTensor } from "../../src/pickle/torch.ts";
import { PyDict, PyTuple } from "../../src/pickle/unpickler.ts";

const t = new TorchTensor({ key: "0", dtype: "F32", numel: 1, byteOffset: 0 }, "F32", 0, [1], [1]);

function dict(...pairs: Array<[unknown, unknown]>): PyDict {
  const d = new PyDict();
  for (const [k, v] of pairs) d.set(k, v);
  return d;
}

describe("flatten", () => {
  test("nested dicts, lists and tuples become dotted names in pickle order", () => {
    const root = dict(["model", dict(["fc.weight", t])], ["opt", dict(["state", dict([0, dict(["exp_avg", t])])])], ["pair", new PyTuple([t, 5])], ["epoch", 3]);
    const { tensors, leaves } = flatten(root, 100);
    expect([...tensors.keys()]).toEqual(["model.fc.weight", "opt.state.0.exp_avg", "pair.0"]);
    expect([...leaves]).toEqual([["pair.1", 5], ["epoch", 3]]);
  });

  test("a bare tensor is named 'tensor'; empty containers are leaves", () => {
    expect([...flatten(t, 100).tensors.keys()]).toEqual(["tensor"]);
    expect([...flatten(dict(["a", new PyDict()], ["b", []]), 100).leaves.keys()]).toEqual(["a", "b"]);
  });

  test("names that collide are an error, not an overwrite", () => {
    expect(() => flatten(dict(["a.b", t], ["a", dict(["b", t])]), 100)).toThrow(/both named "a.b"/);
  });

  test("a cycle fails cleanly", () => {
    const list: unknown[] = [t];
    list.push(list);
    expect(() => flatten(list, 100)).toThrow(SafetensorsError);
  });

  test("exponential sharing is bounded", () => {
    // Each level references the previous one twice: 2^40 paths from 40 objects.
    let level: unknown = [t];
    for (let i = 0; i < 40; i++) level = [level, level];
    expect(() => flatten(level, 100_000)).toThrow("checkpoint flattens to more than 100000 names");
  });
});

describe("describeLeaf", () => {
  test("renders like Python, eliding long and deep values", () => {
    expect(describeLeaf(new PyTuple([1]))).toBe("(1,)");
    expect(describeLeaf(dict(["lr", 0.001], [new PyTuple([1, 2]), null]))).toBe('{"lr": 0.001, (1, 2): None}');
    expect(describeLeaf(Array.from({ length: 100 }, (_, i) => i))).toMatch(/, 15, … 100 items\]$/);
    let deep: unknown = 1;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    expect(describeLeaf(deep)).toBe("[[[[[…]]]]]");
  });
});
