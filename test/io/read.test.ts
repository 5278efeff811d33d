import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../ffi/types.ts";
import { Descriptor } from "../../src/io/descriptor.ts";
import { loadLibc } from "../../src/io/libc.ts";
import { openSource } from "../../src/io/open-source.ts";
import { fsReadAt, MIN_PART, readRange, splitRead, type ReadAt } from "../../src/io/positional-read.ts";
import type { Backend } from "../../src/io/source.ts";

const loaded = await loadLibc();
const libc = "unavailable" in loaded ? undefined : loaded;
const dir = mkdtempSync(join(tmpdir(), "tensormap-read-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file of `n` bytes, each one a function of its offset (so a byte from the wrong place shows). */
function patterned(name: string, n: number): { path: string; bytes: Uint8Array } {
  const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 12)) & 0xff);
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** Anonymous host memory with its address, as a pinned buffer would be. */
function hostMemory(length: number): { addr: bigint; bytes: Uint8Array; [Symbol.dispose](): void } {
  const c = libc!;
  const addr = c.mmap(0n, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return { addr, bytes: new Uint8Array(c.view(addr, length)), [Symbol.dispose]: () => c.munmap(addr, length) };
}

const big = patterned("big.bin", 5 * MIN_PART + 12345);
const backends: Backend[] = libc ? ["read", "mmap"] : ["read"];

describe.each(backends)("ByteSource.read, %s backend", (backend) => {
  test("reads exact ranges into a Uint8Array, split across threads, writing nothing past the length", async () => {
    using src = disposable(await openSource(big.path, { backend, threads: 4 }));
    expect(src.zeroCopy).toBe(backend === "mmap");
    for (const [offset, length] of [[0, big.bytes.length], [1, 4 * MIN_PART + 3], [big.bytes.length - 10, 10], [77, 0]] as const) {
      const into = new Uint8Array(length + 16).fill(0xee);
      await src.read(offset, length, into);
      expect(Buffer.from(into.subarray(0, length)).equals(big.bytes.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
      expect(into.subarray(length).every((b) => b === 0xee)).toBe(true);
    }
    // Into a view that starts inside its buffer: the read lands at the view, not at the buffer's start.
    const backing = new Uint8Array(MIN_PART * 2).fill(1);
    await src.read(100, MIN_PART, backing.subarray(4096, 4096 + MIN_PART));
    expect(backing.subarray(0, 4096).every((b) => b === 1)).toBe(true);
    expect(Buffer.from(backing.subarray(4096, 4096 + MIN_PART)).equals(big.bytes.subarray(100, 100 + MIN_PART))).toBe(true);
  });

  test.skipIf(!libc)("reads into a raw host address where there is FFI", async () => {
    using src = disposable(await openSource(big.path, { backend, threads: 3 }));
    using mem = hostMemory(big.bytes.length);
    await src.read(0, big.bytes.length, mem.addr);
    expect(Buffer.from(mem.bytes).equals(big.bytes)).toBe(true);
    await src.read(MIN_PART, 5000, mem.addr + 3n);
    expect(Buffer.from(mem.bytes.subarray(3, 5003)).equals(big.bytes.subarray(MIN_PART, MIN_PART + 5000))).toBe(true);
  });

  test.skipIf(libc !== undefined)("a raw address without FFI rejects with FfiUnavailable", async () => {
    using src = disposable(await openSource(big.path, { backend }));
    await expect(src.read(0, 8, 4096n)).rejects.toMatchObject({ code: "FfiUnavailable" });
  });

  test("bad ranges, short buffers and closed sources reject with their codes", async () => {
    const src = await openSource(big.path, { backend });
    await expect(src.read(big.bytes.length - 4, 8, new Uint8Array(8))).rejects.toMatchObject({ code: "IoError" });
    await expect(src.read(-1, 1, new Uint8Array(1))).rejects.toMatchObject({ code: "IoError" });
    await expect(src.read(0, 8, new Uint8Array(7))).rejects.toMatchObject({ code: "InvalidArgument" });
    src.close();
    await expect(src.read(0, 8, new Uint8Array(8))).rejects.toMatchObject({ code: "Closed" });
  });

  test("a file that ends early rejects with IoError", async () => {
    const { path } = patterned(`shrinking-${backend}.bin`, 4 * MIN_PART);
    using src = disposable(await openSource(path, { backend, threads: 4 }));
    truncateSync(path, MIN_PART + 100);
    const into = new Uint8Array(4 * MIN_PART);
    await expect(src.read(0, 4 * MIN_PART, into)).rejects.toMatchObject({ code: "IoError", message: expect.stringMatching(/ended early/) });
  });
});

describe("readRange", () => {
  test("a short read is retried until every byte is there", async () => {
    const { path, bytes } = patterned("short.bin", 3 * MIN_PART);
    const file = new Descriptor(path, openSync(path, "r"), closeSync);
    const whole = fsReadAt(file);
    const calls: number[] = [];
    // A reader that never moves more than 100,000 bytes at once, like a pipe or a signal-interrupted read.
    const stingy: ReadAt = (into, at, length, offset) => (calls.push(length), whole(into, at, Math.min(length, 100_000), offset));
    const into = new Uint8Array(bytes.length);
    await readRange({ path, size: bytes.length, threads: 2, readAt: stingy, rawAddresses: false }, 0, bytes.length, into);
    expect(Buffer.from(into).equals(bytes)).toBe(true);
    expect(calls.length).toBeGreaterThanOrEqual(Math.ceil(bytes.length / 100_000));
    file.close();
  });

  test("a failed part rejects only once every other part has stopped writing into the destination", async () => {
    const into = new Uint8Array(2 * MIN_PART);
    let slowDone = false;
    // Part 0 fails at once; part 1 writes 20 ms later, as a read still on another thread would.
    const readAt: ReadAt = (dst, at, length) =>
      at === 0
        ? Promise.resolve(0)
        : new Promise((resolve) => setTimeout(() => ((dst as Uint8Array).fill(9, at, at + length), (slowDone = true), resolve(length)), 20));
    await expect(readRange({ path: "x.bin", size: into.length, threads: 2, readAt, rawAddresses: false }, 0, into.length, into)).rejects.toMatchObject({
      code: "IoError",
    });
    expect(slowDone).toBe(true);
  });

  test("a reader that fails (−1) rejects with IoError naming the file", async () => {
    const failing: ReadAt = async () => -1;
    await expect(readRange({ path: "x.bin", size: 10, threads: 1, readAt: failing, rawAddresses: false }, 0, 10, new Uint8Array(10))).rejects.toMatchObject({
      code: "IoError",
      message: "x.bin: cannot read 10 bytes at offset 0: pread failed",
    });
  });
});

describe("splitRead", () => {
  test("parts tile the read, page-aligned, at most `parts`, each at least the minimum but the last", () => {
    for (const [length, parts, min] of [[8 << 20, 4, 1 << 20], [10_000_001, 3, 4096], [5000, 8, 1 << 20], [1, 4, 1], [0, 4, 1]] as const) {
      const out = splitRead(1000, length, parts, min);
      expect(out.length).toBeLessThanOrEqual(Math.max(1, parts));
      let at = 0;
      for (const [i, p] of out.entries()) {
        expect(p.at).toBe(at);
        expect(p.offset).toBe(1000 + at);
        if (i < out.length - 1) {
          expect(p.length % 4096).toBe(0);
          expect(p.length).toBeGreaterThanOrEqual(min);
        }
        at += p.length;
      }
      expect(at).toBe(length);
    }
    expect(splitRead(0, 8 << 20, 4, 1 << 20).map((p) => p.length)).toEqual([2 << 20, 2 << 20, 2 << 20, 2 << 20]);
  });
});

function disposable<T extends { close(): void }>(src: T): T & Disposable {
  return Object.assign(src, { [Symbol.dispose]: () => src.close() });
}
