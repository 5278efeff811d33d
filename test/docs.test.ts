/**
 * Documentation that runs: every ```ts example of the public API runs here as a test named `file:line` (the
 * line of its opening fence), on Node, Bun and Deno, so that an example cannot rot.
 *
 * Which blocks: those in the JSDoc of what src/index.ts exports (followed to the declaring module), of the
 * public members of those classes and interfaces, and src/index.ts's module comment. Exported helpers that
 * src/index.ts does not export are internal: their examples are not run, and may use internal names. Every
 * public function, class, method and getter must have one (test below), so a new export without one fails.
 *
 * What an example may use: `import { … } from "tensormap"` and nothing else, names that src/index.ts exports,
 * Node's globals (no `Deno`, no `Bun`), and the files in FILES by the names given there. Examples are
 * type-checked as a strict user's code, then run.
 *
 * How one runs: the example, `from "tensormap"` pointed at src/index.ts, is written into a fresh temporary
 * folder holding copies of the fixtures (FILES), and imported with the working directory set to that folder,
 * so a relative path in an example means what a reader takes it to mean, and what it writes lands there.
 * `process.chdir` works because vitest.config.ts runs each test file in a process of its own (`pool:
 * "forks"`); Node refuses it in worker threads, so under a threads pool these tests fail at chdir. What an
 * example prints is kept, and shown only when it fails. No GPU is needed: examples load with
 * `device: "auto"`, which falls back to cpu.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { expect, test } from "vitest";
import { fixture } from "./support/fixtures.ts";
import { importedModules, importedNames, publicDocs, typeErrors, type Example } from "./support/docs.ts";
import { INDEX, runExample } from "./support/run-example.ts";

const ROOT = resolve(import.meta.dirname ?? dirname(new URL(import.meta.url).pathname), "..");

/** What an example's folder holds: name there → fixture. */
const FILES: ReadonlyArray<readonly [name: string, from: string]> = [
  ["model.safetensors", fixture("safetensors", "tiny-gpt2.safetensors")],
  ["checkpoints/gpt2/model.safetensors.index.json", fixture("sharded", "model.safetensors.index.json")],
  ...[1, 2, 3].map((i) => [`checkpoints/gpt2/model-0000${i}-of-00003.safetensors`, fixture("sharded", `model-0000${i}-of-00003.safetensors`)] as const),
  ["pytorch_model.bin", fixture("torch", "pytorch_model.bin")],
  ["checkpoints/pytorch/pytorch_model.bin", fixture("torch", "pytorch_model.bin")],
  ["state-dict.pt", fixture("torch", "state-dict.pt")],
  ["training-checkpoint.pt", fixture("torch", "training-checkpoint.pt")],
];

const docs = publicDocs(INDEX, ROOT);

/** A fresh folder with the fixtures in it, writable like a user's own copies. */
function workdir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-docs-"));
  for (const [name, from] of FILES) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    copyFileSync(from, join(dir, name));
    chmodSync(join(dir, name), 0o644);
  }
  return dir;
}

/** Runs one example in a folder of its own; what it printed comes back in the error when it fails. */
async function run(example: Example): Promise<void> {
  const dir = workdir();
  try {
    await runExample(example, join(dir, "example.ts"), dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("every public function, class, method and getter has an example", () => {
  const missing = docs.documented.filter((d) => d.examples === 0).map((d) => `${d.name} (${d.where})`);
  expect(missing).toEqual([]);
});

test("examples import from \"tensormap\" only, and only names it exports", () => {
  const wrong = docs.examples.flatMap((e) => [
    ...(importedModules(e.code).includes("tensormap") ? [] : [`${e.where}: imports nothing from tensormap`]),
    ...importedModules(e.code).filter((m) => m !== "tensormap").map((m) => `${e.where}: imports ${m}`),
    ...importedNames(e.code).filter((n) => !docs.exports.has(n)).map((n) => `${e.where}: tensormap exports no ${n}`),
  ]);
  expect(wrong).toEqual([]);
});

test("examples type-check against the public API", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-docs-types-"));
  try {
    expect(typeErrors(docs.examples, INDEX, ROOT, dir)).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const example of docs.examples) test(example.where, () => run(example));
