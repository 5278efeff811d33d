import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { hasFfi, runtime } from "../../ffi/runtime.ts";
import { fixture } from "../support/fixtures.ts";

const openSource = fileURLToPath(new URL("../../src/io/open-source.ts", import.meta.url));
const nodeApi = fileURLToPath(new URL("../../ffi/node/api.ts", import.meta.url));
const tiny = fixture("safetensors/tiny-gpt2.safetensors");

/** Runs an ES module body in a fresh Node (this one), which strips the sources' types itself. */
function node(body: string, env: Record<string, string> = {}, flags: string[] = []) {
  return spawnSync(process.execPath, [...flags, "--input-type=module", "-e", body], { encoding: "utf8", env: { ...process.env, ...env } });
}

describe.skipIf(runtime !== "node" || !hasFfi())(`node:ffi${runtime === "node" && !hasFfi() ? " (skipped: this Node has none)" : ""}`, () => {
  test("maps by default, says so under TENSORMAP_DEBUG, and drops node:ffi's warning but no other", () => {
    const r = node(
      `const { openSource } = await import(${JSON.stringify(openSource)});
       const src = await openSource(${JSON.stringify(tiny)});
       console.log(src.backend, src.bytes(0, 8).byteLength);
       src.close();
       process.emitWarning("a warning of the application's own", "ExperimentalWarning");`,
      { TENSORMAP_DEBUG: "1" },
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toBe("mmap 8\n");
    expect(r.stderr).toContain(`tensormap: ${tiny}: mmap backend (auto: libc through node:ffi)`);
    expect(r.stderr).toContain("ExperimentalWarning: a warning of the application's own");
    expect(r.stderr).not.toContain("FFI is an experimental feature");
  });

  test("with node:ffi switched off, reads and says why", () => {
    const r = spawnSync(
      process.execPath,
      ["--no-experimental-ffi", "--input-type=module", "-e", `const { chooseBackend } = await import(${JSON.stringify(openSource)}); console.log((await chooseBackend()).reason);`],
      { encoding: "utf8" },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`auto: Node ${process.versions.node} runs without node:ffi (--no-experimental-ffi)\n`);
  });

  test("a view of a large mapping starts no collection (V8 before 14.8 ran a mark-compact for it)", () => {
    // Only node:ffi and mmap, so that the heap is the fresh one a short-lived loader has.
    const viewMapping = `const { nodeFfi } = await import(${JSON.stringify(nodeApi)});
       const ffi = nodeFfi();
       const { functions: c } = ffi.dlopen("libc.so.6", { mmap: { arguments: ["pointer", "uint64", "int32", "int32", "int32", "int64"], return: "int64" } });
       const length = 512 * 2 ** 20;
       const addr = c.mmap(0n, BigInt(length), 1, 0x22 | 0x4000, -1, 0n);
       console.log("viewing", ffi.toArrayBuffer(addr, length, false).byteLength);
       await new Promise((resolve) => setTimeout(resolve, 50));`;
    const collections = (out: string) => out.split("\n").filter((l) => l.includes("Mark-Compact"));
    const ours = node(viewMapping, {}, ["--trace-gc"]);
    expect(ours.status).toBe(0);
    expect(ours.stdout).toContain(`viewing ${512 * 2 ** 20}`);
    expect(collections(ours.stdout)).toEqual([]);
    // The flag given on the command line is left as it is: switched off there, the same view collects.
    const switchedOff = node(viewMapping, {}, ["--trace-gc", "--no-external-memory-accounted-in-global-limit"]);
    expect(switchedOff.status).toBe(0);
    expect(collections(switchedOff.stdout)).not.toEqual([]);
  });
});
