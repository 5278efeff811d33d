/**
 * Ctrl-C, SIGTERM and SIGHUP while tensormap writes: real signals to real child processes, on Bun and Deno
 * through bin/tensormap.js and the sources, on Node through the packed package's dist/. The process exits with
 * 128 + the signal's number and leaves no temporary file or folder (`.NAME.tmp-…`) behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { removeTranspiled, startChild } from "../io/child.ts";
import { tensormapArgv } from "../package/artefact.ts";
import { legacyFile, statePickle } from "../pickle/build.ts";

const CHILD = fileURLToPath(new URL("./interrupt-child.ts", import.meta.url));

/** Every name under `dir` that is one of tensormap's temporaries. */
function temps(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((p) => /^\..+\.(tmp|old)-/.test(basename(p)));
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Sends `signal` to the child. Not child.kill: under Deno that reports the child as killed whatever its status. */
const send = (child: ChildProcess, signal: NodeJS.Signals) => process.kill(child.pid!, signal);

function exited(child: ChildProcess): Promise<Exit> {
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stderr })));
}

/**
 * Resolves once a temporary of the child's is in `dir`; rejects if the child ends first. Looks every 2 ms (a
 * file watcher may start after the temporary appeared): the child's temporaries live for hundreds of them.
 */
function tempAppears(dir: string, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const looking = setInterval(() => {
      if (temps(dir).length === 0) return;
      clearInterval(looking);
      resolve();
    }, 2);
    child.on("close", (code) => {
      clearInterval(looking);
      reject(new Error(`the child ended (status ${code}) before a temporary file appeared`));
    });
  });
}

/** Resolves once the child says it is ready; rejects if it ends first. */
function ready(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout!.once("data", () => resolve());
    child.on("close", (code) => reject(new Error(`the child ended (status ${code}) before it was ready`)));
  });
}

let scratch: string;
let pickle: string;
/** How this runtime starts `tensormap` (on Node the packed package, packed first if need be). */
let tensormap: string[];

beforeAll(async () => {
  tensormap = await tensormapArgv();
  scratch = mkdtempSync(join(tmpdir(), "tensormap-interrupt-"));
  // A legacy torch.save file of one 128 MB tensor: convert takes long enough to be caught writing it.
  const n = 32 << 20;
  const data = new Uint8Array(n * 4);
  for (let i = 0; i < data.length; i += 4093) data[i] = i & 0xff;
  pickle = join(scratch, "big.pt");
  writeFileSync(pickle, legacyFile(statePickle([{ name: "w", storage: "FloatStorage", key: "0", numel: n, shape: [n] }], true), [["0", n, data]]));
}, 300_000);

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  removeTranspiled();
});

let out: string;
afterEach(() => rmSync(out, { recursive: true, force: true }));

describe(`a signal while the CLI writes, under ${runtime}`, () => {
  test.each([
    ["demo", "SIGINT", 130],
    ["convert", "SIGTERM", 143],
    ["convert", "SIGHUP", 129],
  ] as const)("%s, %s: exits %i and leaves no temporary behind", async (command, signal, status) => {
    out = mkdtempSync(join(scratch, `${command}-`));
    const args = command === "demo" ? ["demo", "--dir", out, "--layers", "1"] : ["convert", pickle, join(out, "model.safetensors")];
    const child = spawn(process.execPath, [...tensormap, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    const exit = exited(child);
    await tempAppears(out, child);
    send(child, signal);
    const { code, signal: killedBy, stderr } = await exit;
    expect({ code, killedBy }).toEqual({ code: status, killedBy: null });
    expect(temps(out)).toEqual([]);
    expect(stderr).not.toMatch(/\n\s+at /);
  }, 120_000);
});

/**
 * Runs interrupt-child.ts in `mode` on `target` (in the folder `out`), sends `signal` once its write is
 * unfinished, with one temporary of it in `out`, and says how it ended.
 */
async function stopWhileWriting(mode: "file" | "folder", target: string, signal: NodeJS.Signals): Promise<Exit> {
  const child = await startChild(CHILD, [mode, target]);
  const exit = exited(child);
  await ready(child);
  expect(temps(out)).toHaveLength(1);
  send(child, signal);
  return exit;
}

describe(`a signal while a write is unfinished, under ${runtime}`, () => {
  test("SIGINT: the temporary file goes and the target was never written", async () => {
    out = mkdtempSync(join(scratch, "file-"));
    expect(await stopWhileWriting("file", join(out, "model.safetensors"), "SIGINT")).toMatchObject({ code: 130, signal: null, stderr: "" });
    expect(readdirSync(out)).toEqual([]);
  });

  test("SIGTERM: the half-built staging folder goes and the old folder is as it was", async () => {
    out = mkdtempSync(join(scratch, "folder-"));
    const target = join(out, "model");
    mkdirSync(target);
    writeFileSync(join(target, "model.safetensors"), "old");
    expect(await stopWhileWriting("folder", target, "SIGTERM")).toMatchObject({ code: 143, signal: null, stderr: "" });
    expect(readdirSync(out)).toEqual(["model"]);
    expect(readdirSync(target)).toEqual(["model.safetensors"]);
    expect(readFileSync(join(target, "model.safetensors"), "utf8")).toBe("old");
  });
});
