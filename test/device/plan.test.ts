import { describe, expect, test } from "vitest";
import { layoutDevice, mappedRange, planChunks, type Chunk, type Extent } from "../../src/device/plan.ts";

/** Replays a plan: every tensor byte must arrive exactly once, at the right tensor offset, from the right file byte. */
function replay(tensors: Extent[], chunkBytes: number) {
  const chunks = planChunks(tensors, chunkBytes);
  const seen = tensors.map((t) => new Array<number>(t.byteLength).fill(-1));
  for (const c of chunks) {
    expect(c.length).toBeGreaterThan(0);
    expect(c.length).toBeLessThanOrEqual(chunkBytes);
    let at = 0;
    for (const p of c.pieces) {
      expect(p.chunkOffset).toBe(at); // pieces tile the chunk in order
      for (let k = 0; k < p.length; k++) {
        expect(seen[p.tensor]![p.tensorOffset + k]).toBe(-1);
        seen[p.tensor]![p.tensorOffset + k] = c.fileOffset + p.chunkOffset + k;
      }
      at += p.length;
    }
    expect(at).toBe(c.length);
  }
  tensors.forEach((t, i) => expect(seen[i]).toEqual(Array.from({ length: t.byteLength }, (_, k) => t.start + k)));
  return chunks;
}

describe("planChunks", () => {
  test("contiguous tensors share chunks and large ones span several", () => {
    const tensors = [
      { start: 8, byteLength: 10 },
      { start: 18, byteLength: 3 },
      { start: 21, byteLength: 0 },
      { start: 21, byteLength: 1 },
    ];
    const chunks = replay(tensors, 4);
    expect(chunks.map((c) => [c.fileOffset, c.length])).toEqual([[8, 4], [12, 4], [16, 4], [20, 2]]);
    expect(chunks[2]!.pieces.map((p) => p.tensor)).toEqual([0, 1]);
  });

  test("a gap (a tensor left out) starts a new chunk; input order does not matter", () => {
    const chunks = replay([{ start: 100, byteLength: 5 }, { start: 0, byteLength: 5 }], 64);
    expect(chunks.map((c) => [c.fileOffset, c.length, c.pieces[0]!.tensor])).toEqual([[0, 5, 1], [100, 5, 0]]);
  });

  test("random layouts replay exactly", () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 50; round++) {
      const tensors: Extent[] = [];
      let at = rand(3) * 8;
      for (let i = rand(8); i >= 0; i--) {
        const len = rand(4) === 0 ? 0 : rand(40);
        tensors.push({ start: at, byteLength: len });
        at += len + (rand(3) === 0 ? rand(5) : 0);
      }
      replay(tensors, 1 + rand(16));
    }
  });

  test("no tensors or only empty ones: no chunks; bad chunk size throws", () => {
    expect(planChunks([], 8)).toEqual([]);
    expect(planChunks([{ start: 8, byteLength: 0 }], 8)).toEqual([]);
    expect(() => planChunks([{ start: 0, byteLength: 1 }], 0)).toThrow(RangeError);
  });
});

describe("layoutDevice", () => {
  test("every tensor starts on a 256-byte boundary, packed in order", () => {
    expect(layoutDevice([10, 0, 300, 256, 1])).toEqual({ offsets: [0, 256, 256, 768, 1024], total: 1025 });
    expect(layoutDevice([])).toEqual({ offsets: [], total: 0 });
  });
});

describe("mappedRange", () => {
  const chunk = (fileOffset: number, length: number): Chunk => ({ fileOffset, length, pieces: [] });

  test("nothing to copy: nothing to register", () => {
    expect(mappedRange([], 4096, 2 ** 32, "m.safetensors")).toBeNull();
  });

  test("covers every chunk from the page holding the first byte", () => {
    expect(mappedRange([chunk(5000, 100)], 4096, 2 ** 32, "m.safetensors")).toEqual({ start: 4096, length: 1004 });
    expect(mappedRange([chunk(8192, 10), chunk(300, 7000), chunk(9000, 50)], 4096, 2 ** 32, "m.safetensors")).toEqual({ start: 0, length: 9050 });
  });

  test("a range past one mapping window is a clear InvalidArgument", () => {
    expect(mappedRange([chunk(4096, 8192)], 4096, 8192, "m.safetensors")).toEqual({ start: 4096, length: 8192 });
    const big = [chunk(100, 2 ** 32), chunk(2 ** 32 + 100, 5)];
    expect(() => mappedRange(big, 4096, 2 ** 32, "/ckpt/m.safetensors")).toThrow(
      expect.objectContaining({
        code: "InvalidArgument",
        message:
          "hostRegister pins the loaded bytes as one mapping, but /ckpt/m.safetensors needs 4294967401 bytes and one mapping holds at most 4294967296 here; load without hostRegister, or fewer tensors at a time (names)",
      }),
    );
  });
});
