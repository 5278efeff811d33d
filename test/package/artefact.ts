/**
 * The npm package as `npm publish` would make it: the package's own files copied into a folder of their own
 * and packed there by `npm pack`, whose `prepack` builds dist/ from nothing. Made once per version of those
 * files (`node_modules/.cache/tensormap-pack/HASH`), so the Node, Bun and Deno test runs share one pack.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../../ffi/runtime.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CACHE = join(ROOT, "node_modules/.cache/tensormap-pack");
const BIN = join(ROOT, "node_modules/.bin");

export const packageJson = (dir = ROOT) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));

/** What the package is made from: package.json's `files` (less dist/, which prepack builds) and the build's configs. */
function inputs(): string[] {
  const files: string[] = packageJson().files.filter((f: string) => f !== "dist");
  return [...files, "package.json", "tsconfig.json", "tsconfig.build.json"];
}

/** Every file below `path`, sorted, as paths relative to ROOT. */
function walk(path: string): string[] {
  if (!statSync(join(ROOT, path)).isDirectory()) return [path];
  return readdirSync(join(ROOT, path)).sort().flatMap((name) => walk(join(path, name)));
}

function sourceHash(): string {
  const hash = createHash("sha256");
  for (const file of inputs().flatMap(walk)) hash.update(`${file}\0`).update(readFileSync(join(ROOT, file))).update("\0");
  return hash.digest("hex").slice(0, 16);
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, collecting its output. */
export function run(command: string, args: readonly string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", fail);
    child.on("close", (code, signal) => done({ code, signal, stdout, stderr }));
  });
}

/** The process id in a lock file; undefined once the lock is gone. */
function lockHolder(lock: string): number | undefined {
  try {
    return Number(readFileSync(lock, "utf8"));
  } catch {
    return undefined;
  }
}

/** A process id's liveness: a lock whose maker is gone is left over from a killed test run. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface Packed {
  /** The packed copy of the package, with the dist/ its prepack built. */
  root: string;
  tarball: string;
  /** The paths inside the tarball, from `npm pack --json`. */
  files: string[];
}

/**
 * The packed package for the current sources, made if it is not there yet. One process packs while the others
 * wait on its lock; the pack is made in a scratch folder and renamed into place, so no one sees half of one.
 *
 * @example
 * ```ts
 * const { tarball } = await packed(); // …/node_modules/.cache/tensormap-pack/3f2a…/tensormap-0.1.0.tgz
 * ```
 */
export async function packed(): Promise<Packed> {
  const dir = join(CACHE, sourceHash());
  const lock = `${dir}.lock`;
  mkdirSync(CACHE, { recursive: true });
  for (;;) {
    const done = finished(dir);
    if (done) return done;
    // The lock appears with its maker's id in it: written under a name of its own, then linked into place.
    const mine = `${lock}.${process.pid}`;
    writeFileSync(mine, String(process.pid));
    try {
      linkSync(mine, lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = lockHolder(lock);
      if (holder !== undefined && !alive(holder)) rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 200));
    } finally {
      rmSync(mine, { force: true });
    }
  }
  try {
    return finished(dir) ?? (await pack(dir));
  } finally {
    rmSync(lock, { force: true });
  }
}

/** The pack in `dir`, if one was put in place there. */
function finished(dir: string): Packed | undefined {
  return existsSync(join(dir, "pack.json")) ? JSON.parse(readFileSync(join(dir, "pack.json"), "utf8")) : undefined;
}

async function pack(dir: string): Promise<Packed> {
  const scratch = mkdtempSync(join(CACHE, "build-"));
  try {
    const root = join(scratch, "package");
    for (const path of inputs()) cpSync(join(ROOT, path), join(root, path), { recursive: true });
    // tsc for prepack's build comes from the checkout; the copy's own node_modules lookups reach it too.
    const env = { ...process.env, PATH: `${BIN}${delimiter}${process.env.PATH}` };
    const r = await run("npm", ["pack", "--json", "--pack-destination", scratch], { cwd: root, env });
    if (r.code !== 0) throw new Error(`npm pack failed (status ${r.code}):\n${r.stderr}\n${r.stdout}`);
    const [info] = JSON.parse(r.stdout) as [{ filename: string; files: { path: string }[] }];
    const final = join(dir, "package");
    const result: Packed = { root: final, tarball: join(dir, info.filename), files: info.files.map((f) => f.path) };
    writeFileSync(join(scratch, "pack.json"), JSON.stringify(result));
    renameSync(scratch, dir);
    pruneOld(dir);
    return result;
  } catch (e) {
    rmSync(scratch, { recursive: true, force: true });
    // Another process took a lock it thought stale and put the same pack in place first.
    const done = finished(dir);
    if (done) return done;
    throw e;
  }
}

/** Removes the packs of other sources made a day ago or more (a pack in use is one of the sources being tested). */
function pruneOld(keep: string): void {
  for (const name of readdirSync(CACHE)) {
    const path = join(CACHE, name);
    if (path !== keep && Date.now() - statSync(path).mtimeMs > 24 * 3600_000) rmSync(path, { recursive: true, force: true });
  }
}

/** A fresh project outside the checkout with the tarball installed the way a user installs it, offline. */
export async function installed(tarball: string): Promise<string> {
  const app = mkdtempSync(join(tmpdir(), "tensormap-app-"));
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const r = await run("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], { cwd: app });
  if (r.code !== 0) throw new Error(`npm install failed (status ${r.code}):\n${r.stderr}`);
  return app;
}

/** PATH without the checkout's node_modules/.bin (or any folder holding a `bun` or `deno`): a machine with Node only. */
export function nodeOnlyPath(): string {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .filter((d) => d && !existsSync(join(d, "bun")) && !existsSync(join(d, "deno")))
    .join(delimiter);
}

/**
 * The arguments that run the `tensormap` command under this runtime (`process.execPath`): Bun and Deno run the
 * checkout's bin/tensormap.js (the sources), Node the packed package's (its dist/, never older than the sources).
 */
export async function tensormapArgv(): Promise<string[]> {
  if (runtime === "bun") return [join(ROOT, "bin/tensormap.js")];
  if (runtime === "deno") return ["run", "-A", join(ROOT, "bin/tensormap.js")];
  return [join((await packed()).root, "bin/tensormap.js")];
}

/** The deno binary: this process under Deno, else the checkout's. */
export const denoBinary = () => (runtime === "deno" ? process.execPath : join(BIN, "deno"));
