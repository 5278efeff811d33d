import { expect, test } from "vitest";
import { leafJson } from "../../src/pickle/flatten.ts";
import { TorchDtype } from "../../src/pickle/torch.ts";
import { PyDict, PySet, PyTuple } from "../../src/pickle/unpickler.ts";

function dict(...pairs: Array<[unknown, unknown]>): PyDict {
  const d = new PyDict();
  for (const [k, v] of pairs) d.set(k, v);
  return d;
}

test("Python values become the JSON values they are", () => {
  expect(leafJson(null)).toBeNull();
  expect([leafJson(true), leafJson(3), leafJson(0.5), leafJson(12n), leafJson("run-1")]).toEqual([true, 3, 0.5, 12, "run-1"]);
  expect(leafJson(new PyTuple([0.9, 0.999]))).toEqual([0.9, 0.999]);
  expect(leafJson([1, new PySet(["a"]), null])).toEqual([1, ["a"], null]);
  expect(leafJson(dict(["lr", 0.001], [0, "zero"], [new PyTuple([1, 2]), true], ["__proto__", 1]))).toEqual(
    Object.fromEntries([["lr", 0.001], ["0", "zero"], ["(1, 2)", true], ["__proto__", 1]]),
  );
});

test("what JSON cannot hold is text: huge ints, NaN and infinities, bytes, dtypes", () => {
  expect([leafJson(2n ** 64n), leafJson(NaN), leafJson(-Infinity)]).toEqual(["18446744073709551616", "NaN", "-Infinity"]);
  expect(leafJson(new Uint8Array(3))).toBe("<3 bytes>");
  expect(typeof leafJson(new TorchDtype("float32", "F32"))).toBe("string");
});

test("bounded: deep nesting and one list shared at every level give a bounded document", () => {
  let deep: unknown = 1;
  for (let i = 0; i < 10_000; i++) deep = [deep];
  expect(JSON.stringify(leafJson(deep)).length).toBeLessThan(10_000);
  let shared: unknown[] = Array(100).fill(0);
  for (let level = 0; level < 5; level++) shared = Array(100).fill(shared); // 100^6 values if written out
  const text = JSON.stringify(leafJson(shared));
  expect(text.length).toBeLessThan(50_000_000);
  expect(text).toContain("…");
});
