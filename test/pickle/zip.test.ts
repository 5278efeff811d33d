import path from "node:path";
import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { openRead } from "../../src/io/read.ts";
import { readZip } from "../../src/pickle/zip.ts";
import { memorySource, storedZip } from "./build.ts";

const enc = new TextEncoder();
const files: Array<[string, Uint8Array]> = [
  ["a/data.pkl", enc.encode("pickle bytes")],
  ["a/data/0", Uint8Array.from([1, 2, 3, 4, 5])],
  ["a/empty", new Uint8Array(0)],
];

function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SafetensorsError) return e.code;
    throw e;
  }
  return "no error";
}

describe("readZip", () => {
  test.each([false, true])("finds every stored entry's data (zip64: %s)", (zip64) => {
    const source = memorySource(storedZip(files, { zip64 }));
    const entries = readZip(source);
    expect(entries.entries.map((e) => e.name)).toEqual(files.map(([n]) => n));
    for (const [name, data] of files) {
      const e = entries.get(name)!;
      expect(source.bytes(e.offset, e.size)).toEqual(data);
    }
  });

  test("reads torch's own archives: 64-byte aligned data records", () => {
    const source = openRead(path.resolve(process.cwd(), "../shared/fixtures/torch/state-dict.pt"));
    const entries = readZip(source);
    const order = entries.get("state-dict/byteorder")!;
    expect(new TextDecoder().decode(source.bytes(order.offset, order.size))).toBe("little");
    expect(entries.get("state-dict/data/0")).toMatchObject({ size: 160 });
    expect(entries.get("state-dict/data/0")!.offset % 64).toBe(0);
    source.close();
  });

  test("compressed entries are refused", () => {
    expect(errorCode(() => readZip(memorySource(storedZip(files, { method: 8 }))))).toBe("InvalidZip");
  });

  test("every truncation of an archive fails with InvalidZip", () => {
    const whole = storedZip(files, { zip64: true });
    for (let n = 0; n < whole.length; n++) {
      expect(errorCode(() => readZip(memorySource(whole.subarray(0, n)))), `length ${n}`).toBe("InvalidZip");
    }
  });

  test("a corrupted central directory fails with InvalidZip, never out of bounds", () => {
    const whole = storedZip(files, { zip64: true });
    const cd = whole.length - 22 - 20 - 56 - 3 * 46;
    for (let i = cd - 40; i < whole.length; i++) {
      for (const v of [0x00, 0xff, 0x7f]) {
        const bad = whole.slice();
        bad[i] = v;
        const c = errorCode(() => readZip(memorySource(bad)));
        expect(["InvalidZip", "no error"], `byte ${i} = ${v}`).toContain(c);
      }
    }
  });
});
