import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { save } from "../../src/format/writer.ts";
import { chooseBackend, openSource } from "../../src/io/open-source.ts";
import type { MmapSource } from "../../src/io/mmap.ts";
import { open } from "../../src/checkpoint/open.ts";
import { ffiUnavailable, hasFfi, runtime } from "../../ffi/runtime.ts";
import { mappedBytes } from "../support/proc.ts";
import { fixture } from "../support/fixtures.ts";

const tiny = fixture("safetensors/tiny-gpt2.safetensors");

describe("backend choice", () => {
  test("read when asked, whatever the runtime", async () => {
    expect(await chooseBackend("read")).toEqual({ backend: "read", reason: "asked for" });
    const src = await openSource(tiny, { backend: "read" });
    expect(src.backend).toBe("read");
    src.close();
  });

  test("an unknown backend is an argument error", async () => {
    await expect(chooseBackend("fast" as never)).rejects.toMatchObject({ code: "InvalidArgument" });
  });

  test.skipIf(hasFfi())("Node 20–25: auto reads and says why; mmap is refused", async () => {
    expect(await chooseBackend("auto")).toEqual({ backend: "read", reason: `auto: ${ffiUnavailable()}` });
    expect((await openSource(tiny)).backend).toBe("read");
    await expect(openSource(tiny, { backend: "mmap" })).rejects.toMatchObject({
      code: "FfiUnavailable",
      message: `no mmap backend: Node ${process.versions.node} has no FFI (node:ffi came in Node 26)`,
    });
  });

  test.skipIf(!hasFfi())("Bun, Deno and Node 26+: auto maps, through the runtime's FFI", async () => {
    const auto = await chooseBackend();
    expect(auto.backend).toBe("mmap");
    expect(auto.reason).toBe(`auto: libc through ${{ bun: "bun:ffi", deno: "Deno.dlopen", node: "node:ffi" }[runtime]}`);
    expect((await chooseBackend("mmap")).reason).toMatch(/^asked for: libc through/);
    const src = await openSource(tiny, { advice: "willneed", populate: true });
    expect(src.backend).toBe("mmap");
    // The option reaches the mapping: every page is mapped once the background populate settles.
    await src.populated;
    expect(mappedBytes((src as MmapSource).pointer(0))).toBeGreaterThanOrEqual(src.size);
    src.close();
  });

  test("a file opened with populate says when its pages are mapped, under either backend", async () => {
    for (const backend of ["auto", "read"] as const) {
      using file = await open(tiny, { backend, populate: true });
      await expect(file.populated).resolves.toBeUndefined();
      expect(file.tensor(file.offsetKeys()[0]!).bytes.byteLength).toBeGreaterThan(0);
    }
  });
});

describe("prefetch", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-prefetch-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const MiB = 2 ** 20;

  test.skipIf(!hasFfi())("reads and maps the chosen tensors on a kernel thread, and not the others", async () => {
    const path = join(dir, "four.safetensors");
    // Four 1 MiB tensors of distinct bytes: far larger than the kernel's 64 KiB fault-around.
    const tensors = Object.fromEntries(
      ["a", "b", "c", "d"].map((k, i) => [k, { dtype: "U8" as const, shape: [MiB], data: new Uint8Array(MiB).fill(i + 1) }]),
    );
    await save(path, tensors);
    using file = await open(path, { backend: "mmap" });
    const start = (file.source as MmapSource).pointer(0);
    const before = mappedBytes(start);
    expect(before).toBeLessThan(MiB / 4);
    await file.prefetch(["c", "b"]);
    const mapped = mappedBytes(start) - before;
    expect(mapped).toBeGreaterThanOrEqual(2 * MiB);
    expect(mapped).toBeLessThan(2.5 * MiB);
    await file.prefetch();
    expect(mappedBytes(start)).toBeGreaterThanOrEqual(4 * MiB);
    expect(file.tensor("d").bytes.every((b) => b === 4)).toBe(true);
    expect(() => file.prefetch(["e"])).toThrow(expect.objectContaining({ code: "TensorNotFound" }));
  });

  test("under the read backend it settles at once and reads nothing", async () => {
    using file = await open(tiny, { backend: "read" });
    await expect(file.prefetch()).resolves.toBeUndefined();
  });
});
