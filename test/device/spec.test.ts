import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { parseDevice } from "../../src/device/spec.ts";

test("device strings", () => {
  expect(parseDevice("cpu")).toEqual({ kind: "cpu" });
  expect(parseDevice("auto")).toEqual({ kind: "auto" });
  expect(parseDevice("cuda")).toEqual({ kind: "cuda", index: 0 });
  expect(parseDevice("cuda:0")).toEqual({ kind: "cuda", index: 0 });
  expect(parseDevice("cuda:12")).toEqual({ kind: "cuda", index: 12 });
});

test.each(["gpu", "cuda:", "cuda:-1", "cuda:01", "cuda:1.5", "CUDA:0", " cuda", "cuda:99999", ""])("%j is refused", (s) => {
  expect(() => parseDevice(s)).toThrow(SafetensorsError);
  try {
    parseDevice(s);
  } catch (e) {
    expect((e as SafetensorsError).code).toBe("InvalidArgument");
  }
});
