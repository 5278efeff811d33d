/**
 * The npm package as a user gets it: `npm pack`, installed offline into a fresh project outside the checkout,
 * then imported and run there by this test's runtime, and its CLI by Node with no Bun or Deno on the PATH.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { hasFfi, runtime } from "../../ffi/runtime.ts";
import { expected, fixture } from "../support/fixtures.ts";
import { installed, nodeOnlyPath, packageJson, packed, run, type Packed } from "./artefact.ts";

/** Opens a file through the installed package and says what it read, as JSON. */
const READ_SCRIPT = `
import { createHash } from "node:crypto";
import { open } from "tensormap";
const [path, name] = process.argv.slice(2);
const file = await open(path);
const tensor = file.tensor(name);
const sha256 = createHash("sha256").update(tensor.bytes).digest("hex");
console.log(JSON.stringify({ resolved: import.meta.resolve("tensormap"), backend: file.backend, dtype: tensor.dtype, shape: tensor.shape, sha256 }));
file.close();
`;

/** How this runtime runs a script or a bin in the project: as a user would, Deno with every permission. */
const runtimeArgs = (script: string) => (runtime === "deno" ? ["run", "-A", script] : [script]);

let pack: Packed;
let app: string;

beforeAll(async () => {
  pack = await packed();
  app = await installed(pack.tarball);
  writeFileSync(join(app, "read.mjs"), READ_SCRIPT);
}, 300_000);

afterAll(() => {
  if (app) rmSync(app, { recursive: true, force: true });
});

describe(`the installed npm package under ${runtime}`, () => {
  test("imports, opens a fixture and reads a tensor's exact bytes", async () => {
    const name = "h.0.attn.c_attn.weight";
    const r = await run(process.execPath, [...runtimeArgs("read.mjs"), fixture("safetensors/tiny-gpt2.safetensors"), name], { cwd: app });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const want = expected("safetensors/tiny-gpt2.expected.json")[name]!;
    expect(out).toMatchObject({ dtype: want.dtype, shape: want.shape, sha256: want.sha256 });
    // Bun runs the TypeScript; Node and Deno (which strips no types under node_modules) the compiled JavaScript.
    const entry = runtime === "bun" ? "node_modules/tensormap/src/index.ts" : "node_modules/tensormap/dist/src/index.js";
    expect(out.resolved).toBe(new URL(entry, `file://${app}/`).href);
    expect(out.backend).toBe(hasFfi() ? "mmap" : "read");
  });

  test("its CLI prints the package's version", async () => {
    const r = await run(process.execPath, [...runtimeArgs("node_modules/.bin/tensormap"), "--version"], { cwd: app });
    expect(r).toMatchObject({ code: 0, stdout: `${packageJson().version}\n`, stderr: "" });
  });
});

describe("the npm package", () => {
  test("npx tensormap runs on Node alone, with no Bun or Deno on the PATH", async () => {
    const env = { ...process.env, PATH: nodeOnlyPath() };
    expect((await run("sh", ["-c", "command -v bun deno"], { env })).stdout).toBe("");
    const version = await run("npx", ["--no-install", "tensormap", "--version"], { cwd: app, env });
    expect(version).toMatchObject({ code: 0, stdout: `${packageJson().version}\n`, stderr: "" });
    const inspect = await run("npx", ["--no-install", "tensormap", "inspect", fixture("safetensors/tiny-gpt2.safetensors")], { cwd: app, env });
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/^h\.0\.attn\.c_attn\.weight +BF16 +\[16, 48\]/m);
  });

  test("ships the compiled JavaScript, its types and the licence; installing it runs no build script", () => {
    for (const f of ["LICENSE", "bin/tensormap.js", "dist/src/index.js", "dist/src/index.d.ts", "dist/src/cli/main.js"]) expect(pack.files).toContain(f);
    expect(pack.files.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
    const manifest = packageJson(join(app, "node_modules/tensormap"));
    expect(Object.keys(manifest.scripts ?? {}).filter((s) => ["preinstall", "install", "postinstall", "prepare"].includes(s))).toEqual([]);
    // Every entry point a resolver may take (old ones read main and types) is a file in the package.
    const targets = [manifest.main, manifest.types, ...Object.values(manifest.exports["."] as Record<string, string>), ...Object.values(manifest.bin as Record<string, string>)];
    for (const t of targets) expect(pack.files).toContain(t.replace(/^\.\//, ""));
    expect(readFileSync(join(app, "node_modules/tensormap/LICENSE"), "utf8")).toMatch(/^MIT License\n\nCopyright \(c\) 2026 tensormap contributors\n/);
    expect(manifest).toMatchObject({ license: "MIT", repository: { url: expect.any(String) }, homepage: expect.any(String), keywords: expect.any(Array) });
  });
});
