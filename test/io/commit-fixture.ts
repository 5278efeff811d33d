/**
 * The two checkpoints the folder-commit tests swap: an old one (two shards, an index, and files of the
 * user's that no save may lose: a private README, a subfolder, a symlink) and a new one (three shards and an
 * index), each byte known, so a folder can be told to be entirely one or the other. Shared by
 * commit.test.ts and the child process it kills (commit-child.ts).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";
import { writeAtomic } from "../../src/io/commit.ts";

/** Bytes distinct per file and position. */
function bytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 131 + seed * 17 + (i >> 8)) & 0xff;
  return out;
}

export type Entry = { kind: "file"; bytes: Uint8Array; mode: number } | { kind: "dir"; mode: number } | { kind: "link"; target: string };

/** Relative path → entry, parents before children. */
export type Tree = ReadonlyArray<readonly [string, Entry]>;

const file = (seed: number, length: number, mode = 0o644): Entry => ({ kind: "file", bytes: bytes(seed, length), mode });

/** What every save must carry over: not checkpoint files. */
const USER_FILES: Tree = [
  ["README.md", file(1, 300, 0o600)],
  ["sub", { kind: "dir", mode: 0o750 }],
  ["sub/tokenizer.json", file(2, 500)],
  ["sub/deeper", { kind: "dir", mode: 0o755 }],
  ["sub/deeper/x.bin", file(3, 70)],
  ["latest", { kind: "link", target: "README.md" }],
];

export const OLD: Tree = [
  ["model-00001-of-00002.safetensors", file(10, 40_000)],
  ["model-00002-of-00002.safetensors", file(11, 30_000)],
  ["model.safetensors.index.json", file(12, 200, 0o640)],
  ...USER_FILES,
];

/** A new file's mode: 0666 less the umask (children inherit it). */
const NEW_MODE = 0o666 & ~process.umask();

/** The files the new checkpoint writes, in order. The index replaces one of the same name, and keeps its mode. */
export const NEW_FILES: Tree = [
  ["model-00001-of-00003.safetensors", file(20, 300_000, NEW_MODE)],
  ["model-00002-of-00003.safetensors", file(21, 200_000, NEW_MODE)],
  ["model-00003-of-00003.safetensors", file(22, 100_000, NEW_MODE)],
  ["model.safetensors.index.json", file(23, 250, 0o640)],
];

export const NEW: Tree = [...NEW_FILES, ...USER_FILES];

/** The folder's own mode, kept across a save. */
export const FOLDER_MODE = 0o750;

/** Which names a save replaces: the checkpoint's own files. */
export const replaces = (name: string) => /^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/.test(name);

/** Makes `dir` hold `tree`, with plain fs calls (not the code under test). */
export function build(dir: string, tree: Tree): void {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, FOLDER_MODE);
  for (const [path, e] of tree) {
    const at = join(dir, path);
    if (e.kind === "dir") mkdirSync(at);
    else if (e.kind === "link") symlinkSync(e.target, at);
    else writeFileSync(at, e.bytes);
    if (e.kind !== "link") chmodSync(at, e.mode);
  }
}

/** A folder as comparable text: every entry with its kind, mode and content hash (or link target), sorted. */
export function snapshot(dir: string): string[] {
  const out = [`. dir ${(lstatSync(dir).mode & 0o7777).toString(8)}`];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, path));
      if (st.isSymbolicLink()) out.push(`${path} link ${readlinkSync(join(dir, path))}`);
      else if (st.isDirectory()) {
        out.push(`${path} dir ${(st.mode & 0o7777).toString(8)}`);
        walk(path);
      } else out.push(`${path} file ${(st.mode & 0o7777).toString(8)} ${createHash("sha256").update(readFileSync(join(dir, path))).digest("hex")}`);
    }
  };
  walk("");
  return out.sort(byPath);
}

/** The snapshot `build(dir, tree)` gives, without a folder. */
export function expected(tree: Tree): string[] {
  const lines = tree.map(([path, e]) =>
    e.kind === "link" ? `${path} link ${e.target}` : e.kind === "dir" ? `${path} dir ${e.mode.toString(8)}` : `${path} file ${e.mode.toString(8)} ${createHash("sha256").update(e.bytes).digest("hex")}`,
  );
  return [`. dir ${FOLDER_MODE.toString(8)}`, ...lines].sort(byPath);
}

const byPath = (a: string, b: string) => (a.split(" ")[0]! < b.split(" ")[0]! ? -1 : 1);

/**
 * Writes the new checkpoint's files into `staging` as a sharded save does (one atomic file at a time), with
 * `event` called halfway through each file and after it: the points a crash test stops at.
 */
export function writeNew(staging: string, event: (what: string) => void): void {
  for (const [name, e] of NEW_FILES) {
    if (e.kind !== "file") continue;
    const half = e.bytes.byteLength >> 1;
    writeAtomic(join(staging, name), (function* () {
      yield e.bytes.subarray(0, half);
      event(`half of ${name}`);
      yield e.bytes.subarray(half);
    })());
    event(`wrote ${name}`);
  }
}

/**
 * Folders nothing can be written into, each with the errnos a write there fails with: a read-only tmpfs
 * mounted at `base/ro` where this process may mount (root: EROFS), a 0555 folder where permissions hold (not
 * root: EACCES), and sysfs's top folder (creating a file there is EACCES, a folder EPERM, for everyone).
 * `release()` unmounts.
 */
export function unwritableFolders(base: string): { folders: Array<{ path: string; codes: string[] }>; release(): void } {
  const folders = [{ path: "/sys", codes: ["EACCES", "EPERM"] }];
  const ro = join(base, "ro");
  mkdirSync(ro);
  const mounted = mountTmpfs(ro, "ro");
  if (mounted) folders.push({ path: ro, codes: ["EROFS"] });
  else if (process.getuid?.() !== 0) {
    chmodSync(ro, 0o555);
    folders.push({ path: ro, codes: ["EACCES"] });
  }
  return { folders, release: () => void (mounted && unmount(ro)) };
}

/** Mounts a small tmpfs on `dir` where this process may (root with CAP_SYS_ADMIN); false elsewhere. */
export function mountTmpfs(dir: string, options: string): boolean {
  return spawnSync("mount", ["-t", "tmpfs", "-o", `${options},size=16m`, "tmpfs", dir]).status === 0;
}

export function unmount(dir: string): void {
  spawnSync("umount", [dir]);
}
