/**
 * Runs a TypeScript file as a child process of the runtime the tests run on: Bun and Deno run it as it is;
 * Node 20, which cannot, runs a copy of it and of every file it imports, with the types stripped by the
 * TypeScript compiler (made once per test process).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../../ffi/runtime.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+\.ts)["']/g;

let built: string | undefined;
const copies = new Map<string, string>();

/** Transpiles `file` and what it imports (relative `.ts` imports, followed) into one folder; returns the copy of `file`. */
async function transpiled(file: string): Promise<string> {
  const known = copies.get(file);
  if (known) return known;
  const ts = (await import("typescript")).default;
  built ??= mkdtempSync(join(tmpdir(), "tensormap-child-"));
  const todo = [file];
  const seen = new Set<string>();
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const source = readFileSync(f, "utf8");
    for (const m of source.matchAll(IMPORT)) todo.push(resolve(dirname(f), m[1]!));
    const { outputText } = ts.transpileModule(source, {
      fileName: f,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, rewriteRelativeImportExtensions: true, verbatimModuleSyntax: true },
    });
    const out = join(built, relative(ROOT, f)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, outputText);
  }
  writeFileSync(join(built, "package.json"), '{"type": "module"}');
  const copy = join(built, relative(ROOT, file)).replace(/\.ts$/, ".js");
  copies.set(file, copy);
  return copy;
}

/** Removes the transpiled copies (Node); call once the tests that start children are done. */
export function removeTranspiled(): void {
  if (built) rmSync(built, { recursive: true, force: true });
  built = undefined;
  copies.clear();
}

/** The command line that runs `script` with `args` under this runtime. */
export async function childArgv(script: string, args: readonly string[]): Promise<string[]> {
  if (runtime === "deno") return ["run", "-A", script, ...args];
  if (runtime === "bun") return [script, ...args];
  return [await transpiled(script), ...args];
}

export interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` to its end (or its death). */
export async function runChild(script: string, args: readonly string[]): Promise<ChildResult> {
  const r = spawnSync(process.execPath, await childArgv(script, args), { encoding: "utf8" });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `script`; the caller ends it. */
export async function startChild(script: string, args: readonly string[]) {
  return spawn(process.execPath, await childArgv(script, args), { stdio: ["ignore", "pipe", "pipe"] });
}
