import { readFileSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { errnoName, loadLibc, MADV_WILLNEED, MAP_PRIVATE, PROT_READ } from "../../ffi/libc.ts";
import { runtime } from "../../src/runtime.ts";

const fixture = resolve(process.cwd(), "../shared/fixtures/safetensors/tiny-gpt2.safetensors");
const loaded = await loadLibc();
const libc = "unavailable" in loaded ? undefined : loaded;

describe("loadLibc", () => {
  test.skipIf(runtime !== "node")("explains why Node has none", () => {
    expect(loaded).toEqual({ unavailable: "Node has no FFI" });
  });

  test.skipIf(runtime === "node")("binds the running runtime's FFI", () => {
    expect(libc?.runtime).toBe(runtime);
    expect(libc!.pageSize % 4096).toBe(0);
  });
});

describe.skipIf(!libc)("libc over FFI", () => {
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

  test("memcpy copies between raw addresses and JavaScript buffers", () => {
    const src = new Uint8Array([1, 2, 3, 4, 5]);
    const dst = new Uint8Array(5);
    libc!.memcpy(libc!.address(dst), libc!.address(src) + 1n, 4);
    expect([...dst]).toEqual([2, 3, 4, 5, 0]);
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

test("errno values are named", () => {
  expect(errnoName(2)).toBe("ENOENT");
  expect(errnoName(13)).toBe("EACCES");
  expect(errnoName(12)).toBe("ENOMEM");
  expect(errnoName(9999)).toBe("E9999");
});
