import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { hasFfi, runtime } from "../../ffi/runtime.ts";
import { fixture } from "../support/fixtures.ts";

const openSource = fileURLToPath(new URL("../../src/io/open-source.ts", import.meta.url));
const tiny = fixture("safetensors/tiny-gpt2.safetensors");

/** Runs an ES module body in a fresh Node (this one), which strips the sources' types itself. */
function node(body: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ["--input-type=module", "-e", body], { encoding: "utf8", env: { ...process.env, ...env } });
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
});
