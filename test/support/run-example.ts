/**
 * Runs a documentation example (a JSDoc example, a README block) as a module of the runtime under test, the
 * way a reader runs it: `from "tensormap"` and `import("tensormap")` point at the working tree's src/index.ts,
 * and the working directory is the folder its relative paths mean. What it prints is kept, and shown only when
 * it fails. `process.chdir` needs a process per test file (vitest.config.ts: `pool: "forks"`; Node refuses it
 * in worker threads).
 */
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { format } from "node:util";
import type { Example } from "./docs.ts";

/** The public API, which an example's `"tensormap"` means. */
export const INDEX = fileURLToPath(new URL("../../src/index.ts", import.meta.url));

const CONSOLE = ["log", "info", "warn", "error", "debug"] as const;

/**
 * Writes the example to `file` and imports it with `cwd` as the working directory. A module is imported once
 * per process: each example needs a file name of its own. A failure is an Error naming `example.where`, with
 * what the example printed.
 *
 * @example
 * ```ts
 * await runExample({ where: "README.md:40", code: 'import { open } from "tensormap";\n' }, "/tmp/x/readme-40.ts", demoDir);
 * ```
 */
export async function runExample(example: Example, file: string, cwd: string): Promise<void> {
  writeFileSync(file, example.code.replaceAll(/(\bfrom\s*|\bimport\s*\(\s*)(["'])tensormap\2/g, `$1${JSON.stringify(INDEX)}`));
  const printed: string[] = [];
  const saved = CONSOLE.map((k) => console[k]);
  for (const k of CONSOLE) console[k] = (...args: unknown[]) => void printed.push(format(...args));
  const before = process.cwd();
  process.chdir(cwd);
  try {
    await import(pathToFileURL(file).href);
  } catch (e) {
    const output = printed.length ? `\nit printed:\n${printed.join("\n")}` : "";
    throw new Error(`${failedLine(example, file, e)}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}${output}`, { cause: e });
  } finally {
    process.chdir(before);
    CONSOLE.forEach((k, i) => (console[k] = saved[i]!));
  }
}

/**
 * Where in the documentation an example failed: the line its stack names in the example's file, counted from
 * the opening fence (`README.md:74, in the block at README.md:68`), else the fence's line.
 */
function failedLine(example: Example, file: string, error: unknown): string {
  const at = error instanceof Error && error.stack ? new RegExp(`${basename(file).replaceAll(".", "\\.")}:(\\d+):\\d+`).exec(error.stack) : null;
  const [path, fence] = [example.where.slice(0, example.where.lastIndexOf(":")), Number(example.where.slice(example.where.lastIndexOf(":") + 1))];
  return at ? `${path}:${fence + Number(at[1])}, in the block at ${example.where}` : example.where;
}
