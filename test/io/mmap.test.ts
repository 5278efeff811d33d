import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { loadLibc } from "../../src/io/libc.ts";
import { openMmap, touchPages } from "../../src/io/mmap.ts";
import { mappedBytes } from "../support/proc.ts";
import { evict, residentPages, storageReads, vmFlags } from "./smaps.ts";

const fixtures = resolve(process.cwd(), "../shared/fixtures");
const tiny = join(fixtures, "safetensors/tiny-gpt2.safetensors");
const loaded = await loadLibc();
const libc = "unavailable" in loaded ? undefined : loaded;
const noFfi = "unavailable" in loaded ? ` (skipped: ${loaded.unavailable})` : "";
const dir = mkdtempSync(join(tmpdir(), "tensormap-mmap-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GiB = 2 ** 30;

/** A file of `size` bytes that are all holes but the first `head` (sparse: costs no disk). */
function sparseFile(name: string, size: number, head: Uint8Array): string {
  const path = join(dir, name);
  const fd = openSync(path, "w");
  writeSync(fd, head);
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
}

function fileMappings(path: string): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.endsWith(path)).length;
}

function rssAnon(): number {
  const kb = /RssAnon:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]!;
  return Number(kb) * 1024;
}

/** A 1 MiB file of this test's own (no other process maps it), whose pages can be dropped from the page cache. */
const COLD_PAGES = 256;
const cold = join(dir, "cold.bin");
writeFileSync(cold, Uint8Array.from({ length: COLD_PAGES * 4096 }, (_, i) => i & 0xff));
evict(cold);
const evictable = libc !== undefined && residentPages(cold) === 0;

describe.skipIf(!libc)(`mmap source${noFfi}`, () => {
  const whole = readFileSync(tiny);

  test("views show the file's bytes without copying", () => {
    const src = openMmap(libc!, tiny);
    expect(src.backend).toBe("mmap");
    expect(src.size).toBe(whole.length);
    expect(Buffer.from(src.bytes(0, src.size)).equals(whole)).toBe(true);
    const a = src.bytes(1000, 64);
    expect(Buffer.from(a).equals(whole.subarray(1000, 1064))).toBe(true);
    // Zero-copy: the view's memory is the mapping itself (a write through it shows at the pointer).
    a[0] = a[0]! ^ 0xff;
    expect(new Uint8Array(libc!.view(src.pointer(1000), 1))[0]).toBe(a[0]);
    expect(src.bytes(1000, 64).buffer).toBe(a.buffer);
    const dst = new Uint8Array(100);
    src.readInto(dst, 17);
    expect(Buffer.from(dst).equals(whole.subarray(17, 117))).toBe(true);
    src.close();
  });

  test("shared maps the page cache's own pages read-only; the default is a private copy-on-write mapping", () => {
    const real = realpathSync(tiny);
    const perms = () => readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.endsWith(real)).map((l) => l.split(/\s+/)[1]);
    const shared = openMmap(libc!, tiny, { shared: true });
    expect(Buffer.from(shared.bytes(0, shared.size)).equals(whole)).toBe(true);
    expect(perms()).toEqual(["r--s"]);
    shared.close();
    const priv = openMmap(libc!, tiny);
    priv.bytes(0, 1);
    expect(perms()).toEqual(["rw-p"]);
    priv.close();
  });

  test("small windows: ranges across window edges, chunks and the too-large error", () => {
    const page = libc!.pageSize;
    const src = openMmap(libc!, tiny, { windowBytes: 2 * page });
    expect(src.maxView).toBe(2 * page);
    for (const [offset, length] of [[0, 8], [page - 3, 10], [page + 5, page + 100], [3 * page + 10, 2 * page - 200], [whole.length - 7, 7]]) {
      expect(Buffer.from(src.bytes(offset!, length!)).equals(whole.subarray(offset!, offset! + length!))).toBe(true);
    }
    expect(() => src.bytes(10, 2 * page)).toThrow(expect.objectContaining({ code: "TensorTooLarge" }));
    const parts = [...src.chunks(10, whole.length - 10, 3000)];
    expect(parts.every((p) => p.length <= 3000)).toBe(true);
    expect(Buffer.concat(parts).equals(whole.subarray(10))).toBe(true);
    const dst = new Uint8Array(whole.length - 1);
    src.readInto(dst, 1);
    expect(Buffer.from(dst).equals(whole.subarray(1))).toBe(true);
    src.close();
  });

  test("range and lifetime errors", () => {
    const src = openMmap(libc!, tiny, { advice: "random" });
    expect(() => src.bytes(whole.length - 4, 8)).toThrow(expect.objectContaining({ code: "IoError" }));
    expect(() => src.bytes(-1, 1)).toThrow(expect.objectContaining({ code: "IoError" }));
    const kept = src.bytes(0, 4096);
    src.close();
    src.close();
    expect(() => src.bytes(0, 8)).toThrow(expect.objectContaining({ code: "Closed" }));
    expect(() => src.pointer(0)).toThrow(expect.objectContaining({ code: "Closed" }));
    // A view kept past close is detached: empty, reaching no memory; the mapping is gone at once.
    expect(kept.length).toBe(0);
    expect((kept.buffer as ArrayBuffer).detached).toBe(true);
    expect(fileMappings(tiny)).toBe(0);
  });

  test("libc failures are errno-named", () => {
    expect(() => openMmap(libc!, join(dir, "missing.safetensors"))).toThrow(expect.objectContaining({ code: "ENOENT" }));
    expect(() => openMmap(libc!, dir)).toThrow(expect.objectContaining({ code: "NotAFile" }));
    expect(() => openMmap(libc!, tiny, { advice: "often" as never })).toThrow(
      expect.objectContaining({ code: "InvalidArgument" }),
    );
    // A procfs file cannot be sized (lseek is EINVAL): the error says which file.
    expect(() => openMmap(libc!, "/proc/self/status")).toThrow(
      expect.objectContaining({ code: "EINVAL", message: "/proc/self/status: cannot size the file: Invalid argument (EINVAL)" }),
    );
  });

  test("populate maps every page in the background; populated settles once they are", async () => {
    const src = openMmap(libc!, tiny, { populate: true });
    const at = src.pointer(0);
    await src.populated;
    expect(mappedBytes(at)).toBe(Math.ceil(src.size / libc!.pageSize) * libc!.pageSize);
    src.close();
    const plain = openMmap(libc!, tiny);
    await plain.populated;
    expect(mappedBytes(plain.pointer(0))).toBe(0);
    plain.close();
    // Closed before the kernel is done: it settles all the same, and the views are detached, as after any close.
    const early = openMmap(libc!, tiny, { populate: true });
    const view = early.bytes(0, 64);
    early.close();
    await early.populated;
    expect(view.length).toBe(0);
  });

  test("sequential and random advice show in the mapping's VmFlags (sr, rr); none shows neither", () => {
    for (const [advice, flag] of [["sequential", "sr"], ["random", "rr"], ["none", undefined], ["willneed", undefined]] as const) {
      const src = openMmap(libc!, tiny, { advice });
      const flags = vmFlags(src.pointer(0));
      expect(flags.filter((f) => f === "sr" || f === "rr"), advice).toEqual(flag ? [flag] : []);
      expect(Buffer.from(src.bytes(0, src.size)).equals(whole)).toBe(true);
      src.close();
    }
  });

  test.skipIf(!evictable)(
    `willneed advice reads the file into the page cache before any access${evictable ? "" : " (skipped: this file system keeps pages posix_fadvise(DONTNEED) should drop)"}`,
    () => {
      for (const [advice, reads] of [["none", 0], ["willneed", COLD_PAGES * 4096]] as const) {
        evict(cold);
        expect(residentPages(cold)).toBe(0);
        // Storage reads are counted to this process as they are submitted: willneed submits the whole file at open.
        const before = storageReads();
        const src = openMmap(libc!, cold, { advice });
        expect(storageReads() - before, advice).toBe(reads);
        // Read ahead into the page cache, not mapped: nothing of this mapping is resident yet.
        expect(mappedBytes(src.pointer(0))).toBe(0);
        src.close();
      }
    },
  );

  test("prefetch maps the range asked for, settling once it is mapped", async () => {
    const src = openMmap(libc!, cold);
    const at = src.pointer(0);
    expect(mappedBytes(at)).toBe(0);
    // Pages 100–107 of 256: the kernel maps up to 64 KiB around a fault, no further.
    await src.prefetch(100 * 4096 + 10, 8 * 4096 - 20);
    expect(mappedBytes(at)).toBeGreaterThanOrEqual(8 * 4096);
    expect(mappedBytes(at)).toBeLessThanOrEqual(8 * 4096 + 2 * 65536);
    await src.prefetch(0, src.size);
    expect(mappedBytes(at)).toBe(src.size);
    src.close();
  });

  test("views of a large file do not grow private memory", () => {
    const size = 512 * 2 ** 20;
    const path = sparseFile("large.bin", size, new Uint8Array([7]));
    const before = rssAnon();
    const src = openMmap(libc!, path);
    const view = src.bytes(0, size);
    expect(view[0]).toBe(7);
    expect(rssAnon() - before).toBeLessThan(size / 4);
    src.close();
  });

  test("a file larger than memory maps (writable private mappings reserve no memory)", () => {
    const size = Math.max(256 * GiB, 4 * totalmem());
    const path = sparseFile("larger-than-ram.bin", size, new Uint8Array([9]));
    const src = openMmap(libc!, path);
    expect(src.bytes(0, 1)[0]).toBe(9);
    expect(src.bytes(size - 1, 1)[0]).toBe(0);
    src.close();
  });

  test("a file over 4 GiB: ranges anywhere, one longer than a view is chunked", () => {
    const size = 5 * GiB + 123;
    const path = sparseFile("huge.bin", size, new Uint8Array([1, 2, 3]));
    const src = openMmap(libc!, path, { advice: "random" });
    expect(src.size).toBe(size);
    expect([...src.bytes(0, 3)]).toEqual([1, 2, 3]);
    // Straddles the 4 GiB mark, and in Bun a window edge.
    const mid = src.bytes(4 * GiB - 10, GiB);
    expect(mid.length).toBe(GiB);
    expect(mid[0]! + mid[GiB - 1]!).toBe(0);
    expect(src.bytes(size - 1, 1)[0]).toBe(0);
    const long = 4.5 * GiB;
    if (long > src.maxView) expect(() => src.bytes(1, long)).toThrow(expect.objectContaining({ code: "TensorTooLarge" }));
    let total = 0;
    for (const part of src.chunks(1, long, GiB)) {
      expect(part.length).toBeLessThanOrEqual(GiB);
      total += part.length;
    }
    expect(total).toBe(long);
    src.close();
    expect(fileMappings(path)).toBe(0);
  });
});

test("touchPages reads every page and the last byte", () => {
  const bytes = new Uint8Array(10_000).fill(1);
  expect(touchPages(bytes)).toBe(4);
  expect(touchPages(new Uint8Array(0))).toBe(0);
  // Lengths around the four-pages-a-turn loop's edges, each page's first byte distinct.
  for (const pages of [1, 3, 4, 5, 7, 8, 9]) {
    for (const extra of [-1, 0, 1, 4095]) {
      const n = pages * 4096 + extra;
      const b = Uint8Array.from({ length: n }, (_, i) => (i % 4096 === 0 ? 1 + ((i / 4096) % 200) : 0));
      b[n - 1] = 250;
      let want = b[n - 1]!;
      for (let i = 0; i < n; i += 4096) want += b[i]!;
      expect(touchPages(b), `${n} bytes`).toBe(want);
    }
  }
});
