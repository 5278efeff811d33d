/**
 * The README runs: every fenced block of README.md is a test named `README.md:LINE` (the line of its opening
 * fence), under Node 20 and 26, Bun and Deno, so that what a reader copies works as written.
 *
 * Where: one folder holding what `tensormap demo --keep` writes (`single/model.safetensors`, and the same
 * tensors as shards in `sharded/`), made once in beforeAll by the CLI under test, in a project with the packed
 * package installed (`npm i` of the tarball test/package makes), as a reader's folder is after the Install
 * section and the Quick start. Blocks run in README order in that one folder, so a block may use what an
 * earlier one wrote.
 *
 * How: ```ts and ```js blocks run as modules of this runtime, "tensormap" the working tree's src/index.ts
 * (test/support/run-example.ts), and are type-checked as a strict user's code, as the JSDoc examples are.
 * ```sh and ```bash blocks run in bash, stopping at the first command that fails, with `tensormap` and `npx
 * tensormap` the CLI under this runtime (Node: the packed package's dist/; Bun and Deno: bin/tensormap.js from
 * the sources), and `deno` this Deno or the checkout's.
 * ```text blocks are not code. A block that cannot run here says so and why in its info string
 * (```ts no-run: needs a GPU); it is still type-checked, and the test names count the blocks of each kind.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../ffi/runtime.ts";
import { denoBinary, installed, packed, ROOT, run, tensormapArgv } from "./package/artefact.ts";
import { typeErrors, type Example } from "./support/docs.ts";
import { INDEX, runExample } from "./support/run-example.ts";

interface Block extends Example {
  line: number;
  /** The info string's first word: ts, js, sh, bash or text. */
  lang: string;
  /** Why the block does not run here, from `no-run: REASON` in its info string. */
  noRun?: string;
  /** What else the info string says: anything but `no-run: REASON` is a mistake. */
  extra: string;
}

const SCRIPT = new Map([["ts", ".ts"], ["js", ".mjs"]]);
const SHELL = new Set(["sh", "bash"]);
const LANGS = new Set([...SCRIPT.keys(), ...SHELL, "text"]);

/** README.md's fenced blocks, in order. */
function readmeBlocks(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const line = i + 1;
    const code: string[] = [];
    while (++i < lines.length && !/^```\s*$/.test(lines[i]!)) code.push(lines[i]!);
    const info = open[2]!.trim();
    const noRun = /^no-run:\s*(.*)$/.exec(info)?.[1]?.trim();
    blocks.push({ where: `README.md:${line}`, line, lang: open[1]!, noRun, extra: noRun === undefined ? info : "", code: code.join("\n") + "\n" });
  }
  return blocks;
}

const blocks = readmeBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));
const code = blocks.filter((b) => SCRIPT.has(b.lang) || SHELL.has(b.lang));
const runnable = code.filter((b) => b.noRun === undefined);
const notRun = code.filter((b) => b.noRun !== undefined);

/** Any string as one sh word: `it's` is `'it'\''s'`. */
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

let scratch: string;
/** The reader's folder: the installed package and the demo's files. */
let folder: string;
/** PATH for shell blocks: this runtime's `tensormap` and `npx`, and a `deno`, first. */
let path: string;

/** What a shell block's script says when a command fails, before the README line of that command. */
const FAILED_AT = "the README test: a command failed at README.md:";

/**
 * The block as one bash script that checks each command's status as a reader at a prompt sees it (a failure on the
 * left of `&&` too, which `bash -e` lets pass) and stops at the first that fails, naming its README line.
 */
function checkedScript(block: Block): string {
  const lines = block.code.trimEnd().split("\n");
  const script = ["set -o pipefail"];
  for (let i = 0; i < lines.length; i++) {
    const first = i;
    script.push(lines[i]!);
    while (lines[i]!.endsWith("\\") && i + 1 < lines.length) script.push(lines[++i]!);
    if (!/^\s*(#|$)/.test(lines[first]!)) script.push(`s=$?; [ $s -eq 0 ] || { echo "${FAILED_AT}${block.line + first + 1}" >&2; exit $s; }`);
  }
  return script.join("\n");
}

/** A shell block run in the folder; the failing command's line and the output come back in the error. */
async function runShell(block: Block): Promise<void> {
  const r = await run("bash", ["-c", checkedScript(block)], { cwd: folder, env: { ...process.env, PATH: path } });
  if (r.code === 0) return;
  const at = r.stderr.lastIndexOf(FAILED_AT);
  const where = at < 0 ? block.where : `README.md:${parseInt(r.stderr.slice(at + FAILED_AT.length), 10)}, in the block at ${block.where}`;
  throw new Error(`${where}: exit status ${r.code ?? r.signal}; it printed:\n${r.stdout}${at < 0 ? r.stderr : r.stderr.slice(0, at)}`.trimEnd());
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "tensormap-readme-"));
  const bin = join(scratch, "bin");
  mkdirSync(bin);
  mkdirSync(join(scratch, "scripts"));
  writeFileSync(join(bin, "tensormap"), `#!/bin/sh\nexec ${[process.execPath, ...(await tensormapArgv())].map(quote).join(" ")} "$@"\n`);
  writeFileSync(join(bin, "npx"), `#!/bin/sh\n[ "$1" = tensormap ] || { echo "npx $1: the README test runs npx tensormap only" >&2; exit 127; }\nshift\nexec tensormap "$@"\n`);
  for (const name of ["tensormap", "npx"]) chmodSync(join(bin, name), 0o755);
  symlinkSync(denoBinary(), join(bin, "deno"));
  path = [bin, process.env.PATH ?? ""].join(delimiter);
  folder = await installed((await packed()).tarball);
  const demo = await run(join(bin, "tensormap"), ["demo", "--keep", "--dir", folder]);
  if (demo.code !== 0) throw new Error(`tensormap demo --keep failed (status ${demo.code}):\n${demo.stderr}\n${demo.stdout}`);
}, 600_000);

afterAll(() => {
  for (const dir of [folder, scratch]) if (dir) rmSync(dir, { recursive: true, force: true });
});

test("every block says what it is (ts, js, sh, bash or text), and one that does not run here why", () => {
  const wrong = blocks.flatMap((b) => [
    ...(LANGS.has(b.lang) ? [] : [`${b.where}: \`\`\`${b.lang} is none of ${[...LANGS].join(", ")}`]),
    ...(b.extra ? [`${b.where}: info string "${b.extra}" (only "no-run: REASON" may follow the language)`] : []),
    ...(b.noRun === "" ? [`${b.where}: no-run gives no reason`] : []),
    ...(b.noRun !== undefined && b.lang === "text" ? [`${b.where}: a text block is not code: no-run says nothing`] : []),
  ]);
  expect(wrong).toEqual([]);
});

test(`the ${code.filter((b) => SCRIPT.has(b.lang)).length} script blocks type-check against the public API, those that do not run here too`, () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-readme-types-"));
  try {
    expect(typeErrors(code.filter((b) => SCRIPT.has(b.lang)), INDEX, ROOT, dir)).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe(`README.md under ${runtime}: ${runnable.length} blocks run, ${notRun.length} no-run (each says why), ${blocks.filter((b) => b.lang === "text").length} text`, () => {
  for (const block of code) {
    if (block.noRun !== undefined) {
      test.skip(`${block.where} (${block.lang}) no-run: ${block.noRun}`, () => {});
      continue;
    }
    test(`${block.where} (${block.lang})`, async () => {
      if (SHELL.has(block.lang)) return runShell(block);
      await runExample(block, join(scratch, "scripts", `readme-${block.line}${SCRIPT.get(block.lang)}`), folder);
    }, 180_000);
  }
});
