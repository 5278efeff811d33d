import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { describeLeaf, flatten, MAX_NAME_LENGTH } from "../../src/pickle/flatten.ts";
import { TorchTensor } from "../../src/pickle/torch.ts";
import { PyDict, PyTuple } from "../../src/pickle/unpickler.ts";

const limits = { names: 100, chars: 1 << 20 };
const t = new TorchTensor({ key: "0", dtype: "F32", numel: 1, byteOffset: 0 }, "F32", 0, [1], [1]);

function dict(...pairs: Array<[unknown, unknown]>): PyDict {
  const d = new PyDict();
  for (const [k, v] of pairs) d.set(k, v);
  return d;
}

describe("flatten", () => {
  test("nested dicts, lists and tuples become dotted names in pickle order", () => {
    const root = dict(["model", dict(["fc.weight", t])], ["opt", dict(["state", dict([0, dict(["exp_avg", t])])])], ["pair", new PyTuple([t, 5])], ["epoch", 3]);
    const { tensors, leaves } = flatten(root, limits);
    expect([...tensors.keys()]).toEqual(["model.fc.weight", "opt.state.0.exp_avg", "pair.0"]);
    expect([...leaves]).toEqual([["pair.1", 5], ["epoch", 3]]);
  });

  test("a bare tensor is named 'tensor'; empty containers are leaves", () => {
    expect([...flatten(t, limits).tensors.keys()]).toEqual(["tensor"]);
    expect([...flatten(dict(["a", new PyDict()], ["b", []]), limits).leaves.keys()]).toEqual(["a", "b"]);
  });

  test("names that collide are an error, not an overwrite", () => {
    expect(() => flatten(dict(["a.b", t], ["a", dict(["b", t])]), limits)).toThrow(/both named "a.b"/);
  });

  test("a cycle fails cleanly", () => {
    const list: unknown[] = [t];
    list.push(list);
    expect(() => flatten(list, limits)).toThrow(SafetensorsError);
  });

  test("exponential sharing is bounded", () => {
    // Each level references the previous one twice: 2^40 paths from 40 objects.
    let level: unknown = [t];
    for (let i = 0; i < 40; i++) level = [level, level];
    expect(() => flatten(level, { names: 100_000, chars: 1 << 30 })).toThrow("checkpoint flattens to more than 100000 names");
  });

  test("a long key repeated down a cycle stops at the name length limit, not at the engine's", () => {
    const d = dict();
    d.set("K".repeat(1 << 20), d);
    expect(() => flatten(d, { names: 1 << 20, chars: 1 << 30 })).toThrow(`checkpoint has a name longer than ${MAX_NAME_LENGTH} characters`);
  });

  test("names that each fit still cannot add up past the character budget", () => {
    // 2,000 references to one dict whose key is 60,000 characters: 120 M characters of names.
    const shared = dict(["k".repeat(60_000), t]);
    const root = Array.from({ length: 2000 }, () => shared);
    expect(() => flatten(root, { names: 1 << 20, chars: 1 << 24 })).toThrow(`checkpoint names add up to more than ${1 << 24} characters`);
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
    expect(describeLeaf(10n ** 2000n)).toBe(`10000000000000000000…(2001 digits)`);
  });

  test("shared nesting cannot make the text long", () => {
    // 16 items of 16 items … of 200-character strings would be 13 M characters in full.
    let level: unknown = "s".repeat(1000);
    for (let i = 0; i < 4; i++) level = new Array(16).fill(level);
    const text = describeLeaf(level);
    expect(text.length).toBeLessThan(6000);
    expect(text).toMatch(/^\[\[\[\["s{200}…", .*… 16 items\]$/);
  });
});
