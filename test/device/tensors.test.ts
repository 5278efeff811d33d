import { expect, test } from "vitest";
import { Cleanup } from "../../src/device/cuda.ts";
import { DeviceTensors, type HostTensor } from "../../src/device/tensors.ts";

/** Tensors on the cpu whose cleanup counts how often it ran: what a real load's `Cleanup` holds (frees, closes). */
function loaded(): { tensors: DeviceTensors; released: () => number } {
  let runs = 0;
  const cleanup = new Cleanup();
  cleanup.add(() => runs++);
  const t: HostTensor = { name: "w", dtype: "F32", shape: [1], byteLength: 4, device: "cpu", bytes: new Uint8Array(4) };
  const tensors = new DeviceTensors({ device: "cpu", reason: "asked for", tensors: new Map([["w", t]]), cleanup, bytes: 4, seconds: 0 });
  return { tensors, released: () => runs };
}

test("close() releases once, however often it is called; get and toHost after it are Closed", () => {
  const { tensors, released } = loaded();
  expect(tensors.get("w").byteLength).toBe(4);
  tensors.close();
  tensors.close();
  expect(released()).toBe(1);
  expect(() => tensors.get("w")).toThrow(expect.objectContaining({ code: "Closed" }));
  expect(() => tensors.toHost("w")).toThrow(expect.objectContaining({ code: "Closed" }));
});

test("free() is the same as close(): either after the other does nothing more", () => {
  const a = loaded();
  a.tensors.free();
  a.tensors.close();
  const b = loaded();
  b.tensors.close();
  b.tensors.free();
  expect([a.released(), b.released()]).toEqual([1, 1]);
  expect(() => b.tensors.get("w")).toThrow(expect.objectContaining({ code: "Closed" }));
});

test("using closes at the end of the scope", () => {
  const { tensors, released } = loaded();
  {
    using scoped = tensors;
    expect(scoped.has("w")).toBe(true);
    expect(released()).toBe(0);
  }
  expect(released()).toBe(1);
  expect(() => tensors.get("w")).toThrow(expect.objectContaining({ code: "Closed" }));
});
