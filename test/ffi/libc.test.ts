import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { MADV_WILLNEED, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../ffi/types.ts";
import { Descriptor } from "../../src/io/descriptor.ts";
import { errnoName, loadLibc, type LibC } from "../../src/io/libc.ts";
import { ffiUnavailable, hasFfi, runtime } from "../../ffi/runtime.ts";

const fixture = resolve(process.cwd(), "../shared/fixtures/safetensors/tiny-gpt2.safetensors");
const loaded = await loadLibc();
const libc = "unavailable" in loaded ? undefined : loaded;
const noFfi = "unavailable" in loaded ? ` (skipped: ${loaded.unavailable})` : "";

describe("loadLibc", () => {
  test.skipIf(runtime !== "node" || hasFfi())("explains why a Node before 26 has none", () => {
    expect(loaded).toEqual({ unavailable: `Node ${process.versions.node} has no FFI (node:ffi came in Node 26)` });
  });

  test.skipIf(ffiUnavailable() !== undefined)("binds the running runtime's FFI", () => {
    expect(libc?.runtime).toBe(runtime);
    expect(libc!.pageSize % 4096).toBe(0);
  });
});

describe.skipIf(!libc)(`libc over FFI${noFfi}`, () => {
  test("mmap shows the file's bytes; munmap releases them", () => {
    const c = libc!;
    const fd = c.openRead(fixture);
    const size = c.fileSize(fd);
    expect(size).toBe(statSync(fixture).size);
    const addr = c.mmap(0n, size, PROT_READ, MAP_PRIVATE, fd, 0);
    c.close(fd);
    expect(addr % BigInt(c.pageSize)).toBe(0n);
    c.madvise(addr, size, MADV_WILLNEED);
    const view = new Uint8Array(c.view(addr, size));
    expect(Buffer.from(view).equals(readFileSync(fixture))).toBe(true);
    c.munmap(addr, size);
  });

  /** The fixture open for preads: a descriptor that stays open while reads are in flight. */
  const fixtureFile = () => new Descriptor(fixture, libc!.openRead(fixture), (fd) => libc!.close(fd));

  test.each([1, 3])("pread reads file bytes into host memory (%i threads)", async (threads) => {
    const want = readFileSync(fixture);
    using mem = anonymous(libc!, want.byteLength + 8);
    const f = fixtureFile();
    const pread = (dst: bigint, length: number, offset: number) => f.during((fd) => libc!.pread(fd, dst, length, offset, threads));
    const half = 10_000;
    expect(await Promise.all([pread(mem.addr, half, 0), pread(mem.addr + BigInt(half), mem.bytes.byteLength - half, half)])).toEqual([
      half,
      want.byteLength - half, // short read at the end of the file
    ]);
    expect(Buffer.from(mem.bytes.subarray(0, want.byteLength)).equals(want)).toBe(true);
    expect(await pread(mem.addr, 8, want.byteLength)).toBe(0);
    f.close();
    f.close();
    await expect(pread(mem.addr, 8, 0)).rejects.toThrow(expect.objectContaining({ code: "Closed" }));
  });

  test("closing a descriptor waits for the reads in flight on other threads", async () => {
    const want = readFileSync(fixture);
    using mem = anonymous(libc!, want.byteLength);
    const f = fixtureFile();
    const third = Math.ceil(want.byteLength / 3);
    const reads = [0, third, 2 * third].map((at) => f.during((fd) => libc!.pread(fd, mem.addr + BigInt(at), third, at, 3)));
    f.close(); // with the descriptor closed now, the reads would fail with EBADF (−1)
    expect((await Promise.all(reads)).reduce((a, n) => a + n, 0)).toBe(want.byteLength);
    expect(Buffer.from(mem.bytes).equals(want)).toBe(true);
  });

  test("a pread that cannot run rejects alone; the others and later reads complete", async () => {
    const want = readFileSync(fixture);
    using mem = anonymous(libc!, 3 * 4096);
    const f = fixtureFile();
    const pread = (dst: bigint, length: number, offset: number) => f.during((fd) => libc!.pread(fd, dst, length, offset, 3));
    const reads = [pread(mem.addr, 4096, 0), pread("not an address" as unknown as bigint, 4096, 4096), pread(mem.addr + 8192n, 4096, 8192)];
    const [a, bad, c] = await Promise.allSettled(reads);
    expect(bad!.status).toBe("rejected");
    expect([a, c]).toEqual([{ status: "fulfilled", value: 4096 }, { status: "fulfilled", value: 4096 }]);
    expect(await pread(mem.addr + 4096n, 4096, 4096)).toBe(4096);
    expect(Buffer.from(mem.bytes).equals(want.subarray(0, 3 * 4096))).toBe(true);
    expect(await pread(1n, 4096, 0)).toBe(-1); // EFAULT: a failed pread is −1, not a rejection
    f.close();
  });

  test("a missing file is ENOENT with libc's message", () => {
    expect(() => libc!.openRead("/nonexistent/model.safetensors")).toThrow(
      expect.objectContaining({ code: "ENOENT", message: expect.stringContaining("No such file or directory") }),
    );
  });

  test("other failures carry their errno names too", () => {
    const fd = libc!.openRead(resolve(fixture, ".."));
    // A directory opens read-only but cannot be mapped.
    expect(() => libc!.mmap(0n, 4096, PROT_READ, MAP_PRIVATE, fd, 0)).toThrow(expect.objectContaining({ code: "ENODEV" }));
    libc!.close(fd);
    expect(() => libc!.close(fd)).toThrow(expect.objectContaining({ code: "EBADF" }));
    expect(() => libc!.madvise(1n, 4096, MADV_WILLNEED)).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });
});

describe.skipIf(!libc)(`renameExchange${noFfi}`, () => {
  test("swaps two real folders in one step; each then holds what the other did", () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-exchange-"));
    try {
      const [a, b] = [join(dir, "model"), join(dir, ".model.new")];
      mkdirSync(a);
      mkdirSync(b);
      writeFileSync(join(a, "model.safetensors"), "old");
      writeFileSync(join(b, "model.safetensors"), "new");
      writeFileSync(join(b, "config.json"), "{}");
      libc!.renameExchange(b, a);
      expect(readdirSync(a).sort()).toEqual(["config.json", "model.safetensors"]);
      expect(readFileSync(join(a, "model.safetensors"), "utf8")).toBe("new");
      expect(readdirSync(b)).toEqual(["model.safetensors"]);
      expect(readFileSync(join(b, "model.safetensors"), "utf8")).toBe("old");
      // A missing side is ENOENT, named after errno, and nothing moves.
      expect(() => libc!.renameExchange(join(dir, "missing"), a)).toThrow(
        expect.objectContaining({ code: "ENOENT", message: `cannot exchange ${join(dir, "missing")} and ${a}: No such file or directory (ENOENT)` }),
      );
      expect(readFileSync(join(a, "model.safetensors"), "utf8")).toBe("new");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Anonymous read-write memory with its address, unmapped at the end of the scope. */
function anonymous(c: LibC, length: number): { addr: bigint; bytes: Uint8Array; [Symbol.dispose](): void } {
  const addr = c.mmap(0n, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return { addr, bytes: new Uint8Array(c.view(addr, length)), [Symbol.dispose]: () => c.munmap(addr, length) };
}

test("errno values are named", () => {
  expect(errnoName(2)).toBe("ENOENT");
  expect(errnoName(13)).toBe("EACCES");
  expect(errnoName(12)).toBe("ENOMEM");
  expect(errnoName(9999)).toBe("E9999");
});
