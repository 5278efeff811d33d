import { describe, expect, test } from "vitest";
import { chooseBackend, openSource } from "../../src/io/open-source.ts";
import { runtime } from "../../src/runtime.ts";
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

  test.skipIf(runtime !== "node")("Node: auto reads and says why; mmap is refused", async () => {
    expect(await chooseBackend("auto")).toEqual({ backend: "read", reason: "auto: Node has no FFI" });
    expect((await openSource(tiny)).backend).toBe("read");
    await expect(openSource(tiny, { backend: "mmap" })).rejects.toMatchObject({
      code: "FfiUnavailable",
      message: "no mmap backend: Node has no FFI",
    });
  });

  test.skipIf(runtime === "node")("Bun and Deno: auto maps, through the runtime's FFI", async () => {
    const auto = await chooseBackend();
    expect(auto.backend).toBe("mmap");
    expect(auto.reason).toBe(`auto: libc through ${runtime === "bun" ? "bun:ffi" : "Deno.dlopen"}`);
    expect((await chooseBackend("mmap")).reason).toMatch(/^asked for: libc through/);
    const src = await openSource(tiny, { advice: "willneed", populate: true });
    expect(src.backend).toBe("mmap");
    src.close();
  });
});
