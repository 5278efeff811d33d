import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { createAdviseRing } from "../../ffi/advise-ring.ts";
import { MADV_POPULATE_READ, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, type LibCBinding } from "../../ffi/types.ts";
import { loadLibc, type LibC } from "../../src/io/libc.ts";
import { loadLibcBinding } from "../../ffi/libc.ts";
import { mappedBytes } from "../support/proc.ts";

const loaded = await loadLibc();
const libc = "unavailable" in loaded ? undefined : loaded;
const noFfi = "unavailable" in loaded ? ` (skipped: ${loaded.unavailable})` : "";
const binding = await loadLibcBinding();
const raw: LibCBinding | undefined = "unavailable" in binding ? undefined : binding;
const ring = raw ? createAdviseRing(raw) : undefined;
const usable = ring && !("unavailable" in ring) ? ring : undefined;
const dir = mkdtempSync(join(tmpdir(), "tensormap-ring-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file of `pages` pages of non-zero bytes, and a private mapping of it nobody has touched. */
function mappedFile(c: LibC, pages: number): { addr: bigint; size: number; [Symbol.dispose](): void } {
  const path = join(dir, `f${pages}`);
  const fd = openSync(path, "w");
  writeSync(fd, new Uint8Array(pages * 4096).fill(7));
  closeSync(fd);
  const rfd = c.openRead(path);
  const size = pages * 4096;
  const addr = c.mmap(0n, size, PROT_READ, MAP_PRIVATE, rfd, 0);
  c.close(rfd);
  return { addr, size, [Symbol.dispose]: () => c.munmap(addr, size) };
}

/**
 * Whether this kernel should give a ring, told apart from the ring's own answer: IORING_OP_MADVISE (Linux 5.6),
 * io_uring not switched off (kernel.io_uring_disabled, 6.6+), and no seccomp filter that could refuse it.
 */
function expectedRing(): { usable: true } | { usable: false; why: string } {
  const [major, minor] = release().split(".").map(Number);
  if (major! < 5 || (major === 5 && minor! < 6)) return { usable: false, why: `Linux ${release()} predates IORING_OP_MADVISE` };
  const disabled = existsSync("/proc/sys/kernel/io_uring_disabled") ? readFileSync("/proc/sys/kernel/io_uring_disabled", "utf8").trim() : "0";
  if (disabled !== "0") return { usable: false, why: `kernel.io_uring_disabled is ${disabled}` };
  if (!/^Seccomp:\s+0$/m.test(readFileSync("/proc/self/status", "utf8"))) return { usable: false, why: "a seccomp filter may refuse io_uring" };
  return { usable: true };
}
const expected = expectedRing();

describe.skipIf(!raw)(`io_uring madvise${noFfi}`, () => {
  test.skipIf(!expected.usable)(
    `the ring sets up here: Linux 5.6+, io_uring enabled, no seccomp filter${expected.usable ? "" : ` (skipped: ${expected.why})`}`,
    () => {
      expect(ring).toBeDefined();
      expect(ring && "unavailable" in ring ? ring.unavailable : "usable").toBe("usable");
    },
  );

  test.skipIf(expected.usable)(`without io_uring, the ring says why in one line${expected.usable ? " (skipped: this kernel has it)" : ""}`, () => {
    expect(ring && "unavailable" in ring ? ring.unavailable : "usable").toMatch(/^(io_uring_setup: |io_uring without |cannot map the io_uring: |mmap: )[^\n]+$/);
  });

  test.skipIf(!usable)("MADV_POPULATE_READ on the kernel's thread maps every page before it settles", async () => {
    using f = mappedFile(libc!, 64);
    expect(mappedBytes(f.addr)).toBe(0);
    expect(await usable!.madvise(f.addr, f.size, MADV_POPULATE_READ)).toBe(0);
    expect(mappedBytes(f.addr)).toBe(f.size);
  });

  test.skipIf(!usable)("a failure settles with its errno; calls beyond the ring's 32 entries wait for room", async () => {
    expect(await usable!.madvise(4097n, 10, MADV_POPULATE_READ)).toBe(22); // EINVAL: not page-aligned
    using f = mappedFile(libc!, 4);
    const calls = Array.from({ length: 100 }, () => usable!.madvise(f.addr, f.size, MADV_POPULATE_READ));
    expect(await Promise.all(calls)).toEqual(Array(100).fill(0));
    expect(mappedBytes(f.addr)).toBe(f.size);
  });

  test.skipIf(!usable)("through a 2-entry ring in one-page pieces: every call completes, each in its own order", async () => {
    const small = createAdviseRing(raw!, { entries: 2, piece: 4096 });
    if ("unavailable" in small) throw new Error(small.unavailable);
    const files = [64, 8, 8, 8].map((pages) => mappedFile(libc!, pages));
    try {
      const done = await Promise.all(files.map((f) => small.madvise(f.addr, f.size, MADV_POPULATE_READ)));
      expect(done).toEqual([0, 0, 0, 0]);
      for (const f of files) expect(mappedBytes(f.addr)).toBe(f.size);
    } finally {
      for (const f of files) f[Symbol.dispose]();
    }
  });

  test.skipIf(!usable)("a failing piece ends its call: the pieces after it are not run", async () => {
    const small = createAdviseRing(raw!, { entries: 2, piece: 4096 });
    if ("unavailable" in small) throw new Error(small.unavailable);
    using f = mappedFile(libc!, 16);
    // A hole at page 9 splits the mapping in two; populating across it fails there with ENOMEM.
    const after = f.addr + 10n * 4096n;
    libc!.munmap(f.addr + 9n * 4096n, 4096);
    expect(await small.madvise(f.addr, f.size, MADV_POPULATE_READ)).toBe(12);
    expect(mappedBytes(f.addr)).toBe(9 * 4096);
    expect(mappedBytes(after)).toBe(0);
  });

  test.skipIf(!usable)("a range longer than a piece (1 GiB) goes in linked pieces; the first failing piece names the error", async () => {
    const c = libc!;
    const size = 2.5 * 2 ** 30;
    // Anonymous, never written: populating maps the shared zero page and costs no memory.
    const addr = c.mmap(0n, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    try {
      expect(await usable!.madvise(addr, size, MADV_POPULATE_READ)).toBe(0);
      // A hole in the second GiB: that piece fails (ENOMEM), the ones linked after it are cancelled.
      c.munmap(addr + BigInt(2 ** 30 + 4096), 4096);
      expect(await usable!.madvise(addr, size, MADV_POPULATE_READ)).toBe(12);
    } finally {
      c.munmap(addr, size);
    }
  });
});

describe.skipIf(!libc)(`LibC.madviseInBackground${noFfi}`, () => {
  test("settles once the pages are mapped; failures reject with the errno name", async () => {
    using f = mappedFile(libc!, 16);
    await libc!.madviseInBackground(f.addr, f.size, MADV_POPULATE_READ);
    expect(mappedBytes(f.addr)).toBe(f.size);
    await expect(libc!.madviseInBackground(4097n, 10, MADV_POPULATE_READ)).rejects.toThrow(
      expect.objectContaining({ code: "EINVAL" }),
    );
  });
});
