import { spawnSync } from "node:child_process";
import { closeSync, copyFileSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { planHeader } from "../../src/format/writer.ts";
import { ffiUnavailable, runtime } from "../../ffi/runtime.ts";
import { BLOCK_SLOTS } from "../../ffi/sigbus-guard.ts";
import { fixture, sha256 } from "../support/fixtures.ts";

const child = fileURLToPath(new URL("./lifetime-child.ts", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "tensormap-life-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the child script under this runtime; `denoFlags` replaces Deno's permissions. */
function run(args: string[], denoFlags = ["-A", "--v8-flags=--expose-gc"]) {
  const argv = runtime === "deno" ? ["run", ...denoFlags, child, ...args] : runtime === "node" ? ["--expose-gc", child, ...args] : [child, ...args];
  const r = spawnSync(process.execPath, argv, { encoding: "utf8", env: { ...process.env, TENSORMAP_DEBUG: "1" } });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  return { status: r.status, signal: r.signal, stderr: r.stderr, out: last.startsWith("{") ? JSON.parse(last) : undefined };
}

/** The soft limit on open files, which a child inherits: each open mapped source holds a descriptor. */
function openFilesLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === "unlimited" ? Infinity : Number(soft ?? 0);
}

/** A safetensors file with one U8 tensor `big` of `n` bytes, all a hole on disk. */
function sparseModel(n: number): string {
  const { header } = planHeader([["big", { dtype: "U8", shape: [n], byteLength: n }]]);
  const path = join(dir, `sparse-${n}.safetensors`);
  const fd = openSync(path, "w");
  writeSync(fd, header);
  ftruncateSync(fd, header.length + n);
  closeSync(fd);
  return path;
}

describe.skipIf(ffiUnavailable() !== undefined)(`mmap lifetime, in a child process${ffiUnavailable() ? ` (skipped: ${ffiUnavailable()})` : ""}`, () => {
  test("views written, and used after close, never fault: close detaches them and unmaps; the file is untouched", () => {
    const path = fixture("safetensors/tiny-gpt2.safetensors");
    const hash = sha256(readFileSync(path));
    const r = run(["after-close", path]);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.out.backend).toBe("mmap");
    expect(r.out.before).toBeGreaterThan(0);
    expect(r.out.lengthsAfter).toBe(0);
    expect(r.out.code).toBe("Closed");
    expect(r.out.wrote).toBe(r.out.wrote & 0xff);
    expect(r.out.writtenAfterClose).toBeNull();
    expect(r.out.fileMappings).toBe(0);
    expect(sha256(readFileSync(path))).toBe(hash);
  });

  test("a view an asynchronous write holds when the file closes: no fault (Bun keeps it, reading zeros; Deno detaches it)", () => {
    const r = run(["in-use", scratch("in-use.safetensors")]);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.out.length).toBeGreaterThan(0);
    if (runtime === "bun") expect(r.out.afterClose).toEqual({ length: r.out.length, zeros: true });
    else expect(r.out.afterClose.length).toBe(0);
  });

  test("thousands of open/close cycles leave no mappings behind", () => {
    const big = 64 * 2 ** 20;
    const r = run(["cycles", sparseModel(big), "2000"]);
    expect(r.status).toBe(0);
    expect(r.out.afterClose).toBe(0);
    // Closing unmaps at once, views still held or not: nothing waits for the collector.
    expect(r.out.zeroedWhileKept).toBe(0);
    expect(r.out.zeroedAfterGc).toBeLessThanOrEqual(1);
    // 100 files opened and dropped without close(): the collector releases their mappings. JavaScriptCore scans
    // the stack conservatively, so a stale slot may still pin one.
    expect(r.out.unclosed).toBeGreaterThan(1);
    expect(r.out.afterGc).toBeLessThanOrEqual(1);
    // 2000 leaked windows would be 125 GiB of address space; what is left is the runtime's own growth.
    expect(r.out.growth).toBeLessThan(100 * big);
  });

  /** A copy of a fixture that the child may truncate. */
  const scratch = (name: string) => {
    const path = join(dir, name);
    copyFileSync(fixture("safetensors/tiny-gpt2.safetensors"), path);
    return path;
  };

  test.skipIf(process.arch !== "x64")(`a file truncated under its mapping reads zeros, then FileChanged, and never SIGBUS${process.arch === "x64" ? "" : " (skipped: the SIGBUS guard is x86-64 only)"}`, () => {
    const r = run(["shrunk", scratch("shrunk.safetensors"), "3000"]);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.out.before).toBeGreaterThan(0);
    expect(r.out.after).toBe(0);
    expect(r.out.code).toBe("FileChanged");
  });

  // More than one block of the guard's table: the newest mapping's range sits in a block chained after the first.
  const MANY = BLOCK_SLOTS + 400;
  const manyWhyNot = process.arch !== "x64" ? "the SIGBUS guard is x86-64 only" : openFilesLimit() < MANY + 100 ? `fewer than ${MANY + 100} open files allowed here` : "";
  test.skipIf(manyWhyNot !== "")(
    `${MANY} mappings open at once: one truncated reads zeros, then FileChanged, and never SIGBUS${manyWhyNot && ` (skipped: ${manyWhyNot})`}`,
    () => {
      const r = run(["many-open", scratch("many.safetensors"), String(MANY)]);
      expect(r.signal).toBeNull();
      expect(r.status).toBe(0);
      expect(r.out.open).toBe(MANY);
      expect(r.out.before).toBeGreaterThan(0);
      // Read in the same synchronous run as before the truncation: the guard catches the fault, zeros come back.
      expect(r.out.newest).toEqual({ after: 0, code: "FileChanged" });
      // Last read long before: the identity check sees the new size first (or the guard the fault).
      expect([0, "FileChanged"]).toContain(r.out.oldest.after);
      expect(r.out.oldest.code).toBe("FileChanged");
    },
  );

  test("a SIGBUS in a mapping tensormap does not own still ends the process", () => {
    const r = run(["foreign", scratch("foreign.safetensors")]);
    expect(r.out).toBeUndefined();
    expect(r.signal ?? r.status).toMatch(/SIGBUS|135/);
  });

  test("TENSORMAP_DEBUG explains the choice", () => {
    const r = run(["debug", fixture("safetensors/all-dtypes.safetensors")]);
    expect(r.status).toBe(0);
    expect(r.out.backend).toBe("mmap");
    expect(r.stderr).toMatch(/all-dtypes\.safetensors: mmap backend \(auto: libc through (bun:ffi|Deno\.dlopen|node:ffi)\)/);
  });

  test.skipIf(runtime !== "deno")("Deno without --allow-ffi keeps the read backend and says why", () => {
    const r = run(["debug", fixture("safetensors/all-dtypes.safetensors")], ["--allow-read", "--allow-env"]);
    expect(r.status).toBe(0);
    expect(r.out.backend).toBe("read");
    expect(r.stderr).toContain("read backend (auto: Deno runs without --allow-ffi)");
  });
});
