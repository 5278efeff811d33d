import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { formatIndex, parseIndex, parseSize, planShards, SAVED_FILE, shardName } from "../../src/format/sharded.ts";
import { expected, fixture } from "../support/fixtures.ts";

const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e instanceof SafetensorsError ? e.code : `not a SafetensorsError: ${e}`;
  }
  return "no error";
};

describe("parseSize", () => {
  test.each([
    ["5GB", 5e9],
    ["5GiB", 5 * 2 ** 30],
    ["500MB", 5e8],
    ["1.5GB", 1.5e9],
    ["200MiB", 200 * 2 ** 20],
    ["10kB", 10_000],
    ["3KiB", 3072],
    ["1TB", 1e12],
    [" 2 gib ", 2 * 2 ** 30],
    ["4096", 4096],
    ["7B", 7],
    ["1.0000001kB", 1000],
    [4096, 4096],
  ] as const)("%j is %d bytes", (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  test.each(["", "GB", "5XB", "-1", "-1GB", "1e3", "0", "0.1B", "5 G B", "0x10"])("refuses %j", (input) => {
    expect(codeOf(() => parseSize(input))).toBe("InvalidArgument");
  });

  test.each([0, -5, 1.5, NaN, Infinity, 2 ** 60])("refuses the number %d", (input) => {
    expect(codeOf(() => parseSize(input))).toBe("InvalidArgument");
  });
});

describe("parseIndex", () => {
  const indexPath = fixture("sharded/model.safetensors.index.json");

  test("reads huggingface_hub's index: metadata, weight_map in order, shards sorted", () => {
    const index = parseIndex(readFileSync(indexPath, "utf8"), indexPath);
    expect(index.metadata).toEqual({ total_size: 20736 });
    expect(Object.getPrototypeOf(index.metadata)).toBeNull();
    expect([...index.weightMap.keys()]).toEqual(Object.keys(expected("sharded/expected.json")));
    expect(index.weightMap.get("h.2.attn.c_attn.weight")).toBe("model-00003-of-00003.safetensors");
    expect(index.shards).toEqual([1, 2, 3].map((i) => `model-0000${i}-of-00003.safetensors`));
  });

  test("names that are traps on plain objects are ordinary tensor names", () => {
    const index = parseIndex('{"weight_map":{"__proto__":"a.safetensors","constructor":"b.safetensors"}}', "x");
    expect([...index.weightMap]).toEqual([["__proto__", "a.safetensors"], ["constructor", "b.safetensors"]]);
    expect(index.metadata).toBeNull();
    expect(index.shards).toEqual(["a.safetensors", "b.safetensors"]);
  });

  test.each([
    ["not JSON", "{"],
    ["an array", "[]"],
    ["no weight_map", '{"metadata":{}}'],
    ["weight_map an array", '{"weight_map":[]}'],
    ["an empty weight_map", '{"weight_map":{}}'],
    ["a shard that is not a string", '{"weight_map":{"a":1}}'],
    ["a shard in a parent folder", '{"weight_map":{"a":"../model.safetensors"}}'],
    ["an absolute shard path", '{"weight_map":{"a":"/etc/passwd"}}'],
    ["a backslash path", '{"weight_map":{"a":"..\\\\x.safetensors"}}'],
    ["a shard named ..", '{"weight_map":{"a":".."}}'],
    ["an empty shard name", '{"weight_map":{"a":""}}'],
    ["metadata that is not an object", '{"metadata":"x","weight_map":{"a":"m.safetensors"}}'],
    ["a negative total_size", '{"metadata":{"total_size":-1},"weight_map":{"a":"m.safetensors"}}'],
    ["a fractional total_size", '{"metadata":{"total_size":1.5},"weight_map":{"a":"m.safetensors"}}'],
    ["a string total_size", '{"metadata":{"total_size":"8"},"weight_map":{"a":"m.safetensors"}}'],
  ])("refuses %s as InvalidIndex", (_, text) => {
    expect(codeOf(() => parseIndex(text, "index.json"))).toBe("InvalidIndex");
  });

  test("the error names the index file", () => {
    expect(() => parseIndex("{", "/some/model.safetensors.index.json")).toThrow(/^\/some\/model\.safetensors\.index\.json: /);
  });
});

test("shard names are 1-based and padded to five digits", () => {
  expect(shardName(0, 3)).toBe("model-00001-of-00003.safetensors");
  expect(shardName(41, 120)).toBe("model-00042-of-00120.safetensors");
  expect(SAVED_FILE.test(shardName(41, 120))).toBe(true);
  expect(SAVED_FILE.test("model.safetensors.index.json")).toBe(true);
  expect(SAVED_FILE.test("pytorch_model-00001-of-00002.bin")).toBe(false);
});

describe("planShards", () => {
  test("fills each shard greedily in insertion order", () => {
    expect(planShards([["a", 4], ["b", 4], ["c", 4], ["d", 4]], 10)).toEqual([["a", "b"], ["c", "d"]]);
  });

  test("a shard may be exactly the limit", () => {
    expect(planShards([["a", 5], ["b", 5], ["c", 1]], 10)).toEqual([["a", "b"], ["c"]]);
  });

  test("a tensor over the limit gets a shard of its own, order kept", () => {
    expect(planShards([["a", 3], ["big", 25], ["b", 3], ["c", 3]], 10)).toEqual([["a"], ["big"], ["b", "c"]]);
  });

  test("empty tensors ride along; no tensors is one empty shard", () => {
    expect(planShards([["a", 10], ["e", 0], ["b", 1]], 10)).toEqual([["a", "e"], ["b"]]);
    expect(planShards([], 10)).toEqual([[]]);
  });

  test("reproduces huggingface_hub's split of the fixture at 8000 bytes", () => {
    const want = expected("sharded/expected.json");
    const index = parseIndex(readFileSync(fixture("sharded/model.safetensors.index.json"), "utf8"), "index");
    const plan = planShards([...index.weightMap.keys()].map((name) => [name, want[name]!.nbytes] as const), 8000);
    expect(plan.map((names, i) => names.map((n) => [n, shardName(i, plan.length)]))).toEqual(
      index.shards.map((file) => [...index.weightMap].filter(([, f]) => f === file)),
    );
  });
});

test("formatIndex lays the index out as JSON.stringify(…, null, 2) does, weight_map in the order given", () => {
  const map: [string, string][] = [["b", "model-00001-of-00002.safetensors"], ["a \"q\"", "model-00002-of-00002.safetensors"]];
  const text = formatIndex(123, map);
  expect(text).toBe(JSON.stringify({ metadata: { total_size: 123 }, weight_map: Object.fromEntries(map) }, null, 2) + "\n");
  expect([...parseIndex(text, "x").weightMap]).toEqual(map);
  const numeric = formatIndex(1, [["10", "x.safetensors"], ["2", "x.safetensors"]]);
  expect(numeric.indexOf('"10"')).toBeLessThan(numeric.indexOf('"2"'));
});
