/**
 * The layers import one way. Each file of src/ and ffi/ belongs to a layer, and may import only from its own
 * folder or from a lower layer; ffi/ imports nothing from src/; and no chain of imports (type-only ones
 * included) comes back to where it started.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { expect, test } from "vitest";

const ROOT = resolve(import.meta.dirname ?? dirname(new URL(import.meta.url).pathname), "..");

/** Lowest first: a layer may import from the layers before it. */
const LAYERS: ReadonlyArray<readonly [layer: string, folders: readonly string[]]> = [
  ["ffi: one binding per runtime", ["ffi"]],
  ["errors", ["src/errors.ts"]],
  ["io: byte sources", ["src/io"]],
  ["format: safetensors", ["src/format"]],
  ["pickle: PyTorch files", ["src/pickle"]],
  ["checkpoint: file, sharded, open", ["src/checkpoint"]],
  ["applications: device loading, conversion", ["src/device", "src/convert"]],
  ["cli", ["src/cli"]],
  ["public API", ["src/index.ts"]],
];

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

/** The folder (or root file) that places `file` in a layer, and that layer's rank. */
function placeOf(file: string): { folder: string; rank: number } {
  for (const [rank, [, folders]] of LAYERS.entries()) {
    const folder = folders.find((f) => file === f || file.startsWith(f + "/"));
    if (folder) return { folder, rank };
  }
  throw new Error(`${file} is in no layer: add its folder to LAYERS in test/architecture.test.ts`);
}

/** Relative imports of a file: static, re-exports, dynamic `import()` and worker URLs. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const found = text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|new URL\(\s*)["'](\.{1,2}\/[^"']+)["']/g);
  return [...found].map((m) => relative(ROOT, resolve(ROOT, dirname(file), m[1]!)));
}

const files = [...sources("src"), ...sources("ffi")];
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test("every file of src/ and ffi/ sits in a layer", () => {
  for (const f of files) expect(() => placeOf(f), f).not.toThrow();
});

test("imports go to the same folder or a lower layer only; ffi/ imports nothing from src/", () => {
  const upward: string[] = [];
  for (const [file, deps] of graph) {
    const from = placeOf(file);
    for (const dep of deps) {
      const to = placeOf(dep);
      if (to.folder !== from.folder && to.rank >= from.rank) upward.push(`${file} → ${dep} (${LAYERS[from.rank]![0]} → ${LAYERS[to.rank]![0]})`);
    }
  }
  expect(upward).toEqual([]);
});

test("no import cycles", () => {
  const cycles: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const path: string[] = [];
  const visit = (file: string) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "visiting") {
      cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      return;
    }
    state.set(file, "visiting");
    path.push(file);
    for (const dep of graph.get(file) ?? []) visit(dep);
    path.pop();
    state.set(file, "done");
  };
  for (const f of files) visit(f);
  expect(cycles).toEqual([]);
});

test("the checker sees imports: every layer above ffi imports something", () => {
  // Guards the test itself: a parser that found no imports would pass the rules above vacuously.
  const importing = new Set([...graph].filter(([, deps]) => deps.length > 0).map(([f]) => placeOf(f).rank));
  for (let rank = 2; rank < LAYERS.length; rank++) expect(importing.has(rank), LAYERS[rank]![0]).toBe(true);
});
