/**
 * What JSR publishes: the files deno.json's `publish` names, copied alone into a folder (no node_modules, so no
 * bun-types and no @types/node of the checkout's), checked and dry-run published by Deno's own tooling, offline.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { denoBinary, packageJson, ROOT, run } from "./artefact.ts";

const denoJson = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
const scratch = mkdtempSync(join(tmpdir(), "tensormap-jsr-"));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("the JSR package", () => {
  test("has the npm package's version and licence", () => {
    expect(denoJson.version).toBe(packageJson().version);
    expect(denoJson.license).toBe(packageJson().license);
  });

  test("deno publish --dry-run passes on a copy of the published files alone (its type check included)", async () => {
    const copy = join(scratch, "package");
    const excluded: string[] = denoJson.publish.exclude;
    expect(excluded).toEqual(["**/*.test.ts"]);
    for (const path of denoJson.publish.include as string[]) {
      cpSync(join(ROOT, path), join(copy, path), { recursive: true, filter: (src) => !src.endsWith(".test.ts") });
    }
    // A cache of its own: a type check Deno remembers passing would not run again.
    const env = { ...process.env, DENO_DIR: join(scratch, "deno-dir"), NO_COLOR: "1" };
    const r = await run(denoBinary(), ["publish", "--dry-run", "--allow-dirty"], { cwd: copy, env });
    expect(r.stderr + r.stdout).toMatch(/^Check src\/index\.ts$/m);
    expect(r.stderr + r.stdout).toMatch(/Success Dry run complete/);
    expect(r.code).toBe(0);
  });
});
