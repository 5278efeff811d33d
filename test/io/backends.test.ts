import { describe, expect, test } from "vitest";
import { loadLibc } from "../../src/io/libc.ts";
import { open } from "../../src/checkpoint/open.ts";
import type { MmapSource } from "../../src/io/mmap.ts";
import { expected, fixture, sha256 } from "../support/fixtures.ts";
import { vmFlags } from "./smaps.ts";

const loaded = await loadLibc();
const hasFfi = !("unavailable" in loaded);
const noFfi = "unavailable" in loaded ? ` (skipped: ${loaded.unavailable})` : "";

const files: Array<[string, string]> = [
  ["safetensors/all-dtypes.safetensors", "safetensors/all-dtypes.expected.json"],
  ["safetensors/tiny-gpt2.safetensors", "safetensors/tiny-gpt2.expected.json"],
  ...[1, 2, 3].map((i): [string, string] => [`sharded/model-0000${i}-of-00003.safetensors`, "sharded/expected.json"]),
];

function decode(f: () => Float32Array): unknown {
  try {
    return Array.from(f());
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe.skipIf(!hasFfi)(`mmap and read give identical results${noFfi}`, () => {
  test.each(files)("%s", async (name, listing) => {
    const want = expected(listing);
    using viaMmap = await open(fixture(name), { backend: "mmap", advice: "sequential" });
    using viaRead = await open(fixture(name), { backend: "read" });
    expect(viaMmap.backend).toBe("mmap");
    expect(viaRead.backend).toBe("read");
    expect(viaMmap.keys()).toEqual(viaRead.keys());
    expect(viaMmap.offsetKeys()).toEqual(viaRead.offsetKeys());
    expect(viaMmap.metadata).toEqual(viaRead.metadata);
    // The advice reached the mapping; prefetch settles under both (what it maps is tested in mmap.test.ts).
    expect(vmFlags((viaMmap.source as MmapSource).pointer(0))).toContain("sr");
    await expect(viaMmap.prefetch()).resolves.toBeUndefined();
    await expect(viaRead.prefetch()).resolves.toBeUndefined();
    for (const key of viaRead.keys()) {
      expect(viaMmap.info(key)).toEqual(viaRead.info(key));
      const m = viaMmap.tensor(key);
      const r = viaRead.tensor(key);
      expect([m.dtype, m.shape]).toEqual([r.dtype, r.shape]);
      if (want[key]) expect(sha256(m.bytes)).toBe(want[key].sha256);
      expect(Buffer.from(m.bytes).equals(r.bytes)).toBe(true);
      expect(Array.from(m.typed() as ArrayLike<unknown>)).toEqual(Array.from(r.typed() as ArrayLike<unknown>));
      expect(decode(() => m.toFloat32())).toEqual(decode(() => r.toFloat32()));
      if (m.shape.length >= 1 && m.shape[0]! > 1) {
        const spec = [[1, m.shape[0]!] as [number, number], ...m.shape.slice(1).map(() => null)];
        expect(Buffer.from(viaMmap.slice(key, spec).bytes).equals(viaRead.slice(key, spec).bytes)).toBe(true);
      }
    }
  });
});
