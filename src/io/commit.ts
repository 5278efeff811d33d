/**
 * Writing files and folders so that a reader, or the next process after a crash or a SIGKILL, finds either
 * the old content or the new, whole. A file is written to a temporary sibling, fsynced and renamed over
 * its target; a folder is built as a hidden sibling and swapped with the old one in one step.
 *
 * Temporary names say who made them: `.NAME.tmp-PID-START-HOST-RANDOM` (`.NAME.old-…` for a folder set
 * aside), with the writer's process id, its start time (clock ticks since boot, from /proc, so a reused
 * process id does not pass for the writer) and a hash of the host name (a folder shared over the network or
 * between containers holds other hosts' process ids). Every write into a folder first removes what writers
 * on this host that are gone left there, and puts back a folder one of them had set aside.
 */
import { Buffer } from "node:buffer";
import {
  chmodSync, chownSync, closeSync, constants, copyFileSync, fchmodSync, fchownSync, fstatSync, fsyncSync, linkSync,
  lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync,
  statSync, symlinkSync, writeSync, type Stats,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { loadLibc } from "./libc.ts";
import { fromSystemError, SafetensorsError } from "../errors.ts";

/** /proc/PID/stat's 22nd field, the process's start time; undefined where there is no such process or no /proc. */
function startTime(pid: number | "self"): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function utsName(): string {
  try {
    return readFileSync("/proc/sys/kernel/hostname", "utf8").trim();
  } catch {
    return "";
  }
}

const PID = process.pid;
/**
 * This machine (its UTS name, read from procfs: `os.hostname()` would make Deno ask for --allow-sys at import),
 * hashed; temp files of other machines sharing a folder are left alone.
 */
/** Who this process is, learnt on the first write (at import, a narrowed Deno --allow-read would prompt for /proc). */
let self: { start: string; host: string } | undefined;
const me = () => (self ??= { start: startTime("self") ?? "0", host: hex32(fnv1a(utsName())) });

/** FNV-1a of a string's UTF-16 units: a name's fingerprint (node:crypto would cost Bun 6 ms to import on every open). */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const hex32 = (n: number) => n.toString(16).padStart(8, "0");

/** Temporary names: `.NAME.KIND-PID-START-HOST-RANDOM`. */
const TEMP = /^\.(.+)\.(tmp|old)-(\d+)-(\d+)-([0-9a-f]{8})-([0-9a-f]{8})$/;

/** A name's part in a temporary name, short enough that the whole stays under 255 bytes. */
function namePart(name: string): string {
  let out = "";
  for (const c of name) {
    if (Buffer.byteLength(out + c) > 200) break;
    out += c;
  }
  return out;
}

/** What follows `.NAME.KIND-` in the names one write makes: a staging folder and its set-aside pair share it. */
const writerId = () => `${PID}-${me().start}-${me().host}-${hex32(crypto.getRandomValues(new Uint32Array(1))[0]!)}`;

/**
 * A name beside `path` for a temporary file or folder that a later write recognises, and removes once its
 * writer is gone.
 *
 * @example
 * ```ts
 * tempName("out/model.safetensors"); // "out/.model.safetensors.tmp-4242-91234-3fa2b1c0-9e1d07aa"
 * ```
 */
export function tempName(path: string, kind: "tmp" | "old" = "tmp", id = writerId()): string {
  return join(dirname(path), `.${namePart(basename(path))}.${kind}-${id}`);
}

/** Whether the process that made a temporary name may still be writing it. */
function writerAlive(pid: number, start: string, host: string): boolean {
  // Another host's process ids mean nothing here: its files are left alone.
  if (host !== me().host) return true;
  if (pid === PID) return start === me().start;
  if (me().start !== "0") return startTime(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/** Temporary files and folders of this process that it gave up on: a later write removes them, like a dead writer's. */
const abandoned = new Set<string>();

/** Temporary files and folders this process is writing now: what {@link discardUnfinished} removes. */
const unfinished = new Set<string>();

/**
 * Removes every temporary file and folder this process is writing right now, synchronously and without
 * throwing: for a signal handler, just before the process exits (a later write into the folder would
 * remove them too, but only once this process is gone and only if one comes). Folders set aside during a
 * swap are not among them: one may be the only copy of the old checkpoint.
 *
 * @example
 * ```ts
 * import { discardUnfinished } from "tensormap";
 * const onSigint = () => {
 *   discardUnfinished();
 *   process.exit(130);
 * };
 * process.once("SIGINT", onSigint);
 * process.off("SIGINT", onSigint); // (an example that runs must not keep the handler)
 * ```
 */
export function discardUnfinished(): void {
  for (const path of [...unfinished]) discard(path);
}

/**
 * Removes a file or a whole folder (a temp from {@link writeTemp} that failed a check), never throwing:
 * where a temp cannot go now (a read-only file system), a later write into its folder removes it.
 * Cleanup code that used `rmSync` hid the real error under Bun, whose `rmSync` throws EROFS even with `force`.
 *
 * @example
 * ```ts
 * const tmp = writeTemp("out.safetensors", chunks);
 * try { verify(tmp); } catch (e) { discard(tmp); throw e; }
 * commit(tmp, "out.safetensors");
 * ```
 */
export function discard(path: string): void {
  unfinished.delete(resolve(path));
  try {
    rmSync(path, { recursive: true, force: true });
    abandoned.delete(resolve(path));
  } catch {
    if (exists(path)) abandoned.add(resolve(path));
  }
}

const exists = (path: string): boolean => lstatOf(path) !== undefined;

function lstatOf(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** fsync on a folder, so the renames in it survive a crash. Some file systems refuse it: the data is on disk anyway. */
function syncFolder(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    fsyncSync(fd);
  } catch {
    // Not supported here.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Tidies `folder` after writers that are gone: puts back a folder one of them had set aside (its target is
 * missing: it was killed between its two renames), and removes their temporary files and folders. Files of
 * live writers and of other hosts are left alone; nothing here throws.
 *
 * @example
 * ```ts
 * removeStaleTemps("checkpoints"); // after a SIGKILLed save: `.model.safetensors.tmp-…` is gone
 * ```
 */
export function removeStaleTemps(folder: string): void {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return;
  }
  const dead = names.flatMap((name) => {
    const m = TEMP.exec(name);
    if (!m || (writerAlive(Number(m[3]), m[4]!, m[5]!) && !abandoned.has(resolve(folder, name)))) return [];
    return [{ name, target: m[1]!, kind: m[2]!, id: `${m[3]}-${m[4]}-${m[5]}-${m[6]}` }];
  });
  const present = new Set(names);
  // Set-aside folders first: one that must go back keeps its staging folder until it has.
  const keptAside = new Set<string>();
  for (const t of dead.filter((t) => t.kind === "old")) {
    const target = join(folder, t.target);
    if (t.target !== namePart(t.target) || (exists(target) && present.has(`.${t.target}.tmp-${t.id}`))) {
      // A shortened name does not say its target; a target beside both halves was made by someone since.
      // Neither half is removed.
      keptAside.add(t.id);
    } else if (!exists(target)) {
      try {
        renameSync(join(folder, t.name), target);
        syncFolder(folder);
      } catch {
        // Another process put it back first, or the folder is read-only: left for the next try.
        keptAside.add(t.id);
      }
    } else {
      // The new folder went in (its staging name is gone): the old one is left over.
      discard(join(folder, t.name));
    }
  }
  for (const t of dead.filter((t) => t.kind === "tmp")) {
    if (!keptAside.has(t.id)) discard(join(folder, t.name));
  }
}

/**
 * Puts `dir` back when a writer was killed between moving it aside and moving its new version in (only
 * where renameat2's exchange is not available), so that opening it finds the old checkpoint whole. Cheap
 * when `dir` exists: nothing is read. Returns whether it put the folder back.
 *
 * @example
 * ```ts
 * recoverFolder("checkpoints/llama"); // before opening a model folder
 * ```
 */
export function recoverFolder(dir: string): boolean {
  const target = resolve(dir);
  if (exists(target)) return false;
  removeStaleTemps(dirname(target));
  return exists(target);
}

const MAX_WRITE = 1 << 30;

/** The mode (and, where allowed, the owner) of the file being replaced, or undefined for a new file. */
function replacedFile(path: string): Stats | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? st : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `chunks` to a new temporary file beside `path`, fsynced, and returns its name; {@link commit}
 * renames it into place (writers of several files write them all, then rename). The file gets the mode of
 * the file it will replace, or for a new file the mode the umask gives (0666 less the umask), as writing
 * in place would. Removes what dead writers left in the folder first. On failure nothing is left behind
 * and the error is a `SafetensorsError` with the errno name as its code.
 *
 * @example
 * ```ts
 * const tmp = writeTemp("out/model.safetensors", [header, data]);
 * commit(tmp, "out/model.safetensors");
 * ```
 */
export function writeTemp(path: string, chunks: Iterable<Uint8Array>): string {
  removeStaleTemps(dirname(path));
  const tmp = tempName(path);
  unfinished.add(resolve(tmp));
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx", 0o666);
    const replaced = replacedFile(path);
    const file = fd;
    if (replaced) adopt(replaced, fstatSync(file), (mode) => fchmodSync(file, mode), (uid, gid) => fchownSync(file, uid, gid));
    for (const c of chunks) {
      for (let at = 0; at < c.byteLength; ) at += writeSync(fd, c, at, Math.min(MAX_WRITE, c.byteLength - at));
    }
    fsyncSync(fd);
    const done = fd;
    fd = undefined;
    closeSync(done);
    return tmp;
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // The write's own error is the one to report.
      }
    }
    discard(tmp);
    throw fromSystemError(e, `cannot write ${path}`);
  }
}

/** Gives a new file or folder the mode of the one it replaces, and its owner where this process may. */
function adopt(replaced: Stats, own: Stats, chmod: (mode: number) => void, chown: (uid: number, gid: number) => void): void {
  chmod(replaced.mode & 0o7777);
  if (own.uid === replaced.uid && own.gid === replaced.gid) return;
  try {
    chown(replaced.uid, replaced.gid);
  } catch {
    // Only root may give a file away; it is then ours, as a copy made by this user would be.
  }
}

/** {@link adopt} by path. */
const adoptPath = (replaced: Stats, path: string) =>
  adopt(replaced, statSync(path), (mode) => chmodSync(path, mode), (uid, gid) => chownSync(path, uid, gid));

/** A file the new content writes under a name the old had keeps that file's mode, as a save over it would. */
function keepFileMode(old: string, made: string): void {
  const before = lstatOf(old);
  if (before?.isFile() && lstatOf(made)?.isFile()) adoptPath(before, made);
}

/**
 * Renames a temporary file from {@link writeTemp} over `path`, then fsyncs the folder so the rename survives
 * a crash. On failure the temporary file is removed.
 *
 * @example
 * ```ts
 * commit(writeTemp("model.safetensors", [bytes]), "model.safetensors");
 * ```
 */
export function commit(tmp: string, path: string): void {
  try {
    renameSync(tmp, path);
  } catch (e) {
    discard(tmp);
    throw fromSystemError(e, `cannot write ${path}`);
  }
  unfinished.delete(resolve(tmp));
  syncFolder(dirname(path));
}

/**
 * Writes a whole file or nothing: {@link writeTemp}, then {@link commit}. A reader that has the old file
 * open or mapped keeps the old bytes.
 *
 * @example
 * ```ts
 * writeAtomic("model.safetensors", [header, ...tensorBytes]);
 * ```
 */
export function writeAtomic(path: string, chunks: Iterable<Uint8Array>): void {
  commit(writeTemp(path, chunks), path);
}

export interface WriteFolderOptions {
  /**
   * Called after each step (`staged`, `written`, `linked NAME`, `synced`, then `renamed`, or `exchanged`,
   * or `moved aside` and `moved in`, then `removed old`), for progress and for crash tests. An error it
   * throws before the swap fails the write as an I/O error there would; after it, the new folder stays.
   */
  onStep?: (step: string) => void;
  /** false: swap with two renames even where renameat2's exchange is available (to test that path). */
  exchange?: boolean;
}

/**
 * Replaces the folder `dir` as a whole. `write(staging)` builds the new content in a hidden sibling folder
 * (`.DIR.tmp-…`, same file system); every entry of `dir` for which `replaces(name)` is false and that
 * `write` did not make is then linked in (subfolders recreated, files hard-linked, symlinks copied), and
 * the two folders are swapped in one step (renameat2 `RENAME_EXCHANGE`). Where the exchange is not
 * available (Node, a file system without it), `dir` is renamed aside and the new folder renamed in; a
 * SIGKILL between the two leaves `dir` missing, and the next write or {@link recoverFolder} puts the old
 * one back. Either way, after a crash at any point the folder holds the old checkpoint or the new, whole.
 * A missing `dir` is created by one rename. A symlink to a folder is followed (the folder it names is
 * replaced). The folder keeps its mode.
 *
 * Not atomic as a whole, one rename per entry instead (the staging folder then sits inside `dir`): when
 * `dir` is a mount point (nothing can be renamed over it), holds one (its files cannot be linked), holds
 * this process's working folder (which would be removed under it), or its parent folder is not writable.
 * Entries created in `dir` by others while `write` runs are not carried over.
 *
 * @example
 * ```ts
 * await writeFolder("out", (staging) => {
 *   writeAtomic(join(staging, "model.safetensors"), [bytes]);
 * }, (name) => /^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/.test(name));
 * ```
 */
export async function writeFolder(
  dir: string,
  write: (staging: string) => void | Promise<void>,
  replaces: (name: string) => boolean,
  opts: WriteFolderOptions = {},
): Promise<void> {
  const step = opts.onStep ?? (() => {});
  // A folder a dead writer left set aside goes back first: it is the one this write replaces.
  recoverFolder(dir);
  const old = folderToReplace(dir);
  const target = old ? old.path : resolve(dir);
  const parent = dirname(target);
  removeStaleTemps(parent);
  if (old && (statSync(parent).dev !== old.stats.dev || holdsCwd(target) || holdsMountPoint(target, old.stats.dev))) {
    return writeInPlace(target, write, replaces, step);
  }
  const id = writerId();
  const staging = tempName(target, "tmp", id);
  // Folders made for a new `dir` (its missing parents): a failed write does not leave them behind.
  let madeParents: string | undefined;
  const failed = (e: unknown): never => {
    discard(staging);
    if (madeParents) discard(madeParents);
    throw fromSystemError(e, `cannot write ${dir}`);
  };
  try {
    if (!old) madeParents = mkdirSync(parent, { recursive: true });
    mkdirSync(staging, 0o777);
    for (const made of [madeParents, staging]) if (made) unfinished.add(made);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (old && (code === "EACCES" || code === "EPERM")) return writeInPlace(target, write, replaces, step);
    failed(e);
  }
  try {
    if (old) adoptPath(old.stats, staging);
    step("staged");
    await write(staging);
    step("written");
    if (old) linkEntries(target, staging, replaces, step, "");
    syncFolder(staging);
    step("synced");
  } catch (e) {
    failed(e);
  }
  if (!old) {
    try {
      renameSync(staging, target);
    } catch (e) {
      failed(e);
    }
    for (const made of [madeParents, staging]) if (made) unfinished.delete(made);
    syncFolder(parent);
    afterCommit(undefined, () => step("renamed"));
    return;
  }
  if (opts.exchange !== false && (await exchanged(staging, target, dir))) {
    syncFolder(parent);
    // The staging name now holds the old folder.
    afterCommit(staging, () => step("exchanged"), () => discard(staging), () => step("removed old"));
    return;
  }
  const aside = tempName(target, "old", id);
  try {
    renameSync(target, aside);
  } catch (e) {
    failed(e);
  }
  try {
    step("moved aside");
    renameSync(staging, target);
  } catch (e) {
    try {
      renameSync(aside, target);
    } catch {
      // Left set aside: the next write or recoverFolder puts it back.
      abandoned.add(aside);
    }
    failed(e);
  }
  unfinished.delete(staging);
  syncFolder(parent);
  afterCommit(aside, () => step("moved in"), () => discard(aside), () => step("removed old"));
}

/** The folder `dir` names (a symlink followed), or undefined when there is none yet. */
function folderToReplace(dir: string): { path: string; stats: Stats } | undefined {
  let path: string;
  try {
    path = realpathSync(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT" && !exists(dir)) return undefined;
    throw fromSystemError(e, `cannot write ${dir}`);
  }
  const stats = statSync(path);
  if (!stats.isDirectory()) throw new SafetensorsError("ENOTDIR", `cannot write ${dir}: not a folder`);
  return { path, stats };
}

/** Whether this process works inside `dir`: swapped out, it would leave the process in a removed folder. */
function holdsCwd(dir: string): boolean {
  let cwd: string;
  try {
    cwd = realpathSync(process.cwd());
  } catch {
    return false;
  }
  return cwd === dir || cwd.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** Whether a folder below `dir` is another file system's mount point (links cannot reach it, removal must not). */
function holdsMountPoint(dir: string, dev: number): boolean {
  for (const name of readdirSync(dir)) {
    const st = lstatOf(join(dir, name));
    if (st?.isDirectory() && (st.dev !== dev || holdsMountPoint(join(dir, name), dev))) return true;
  }
  return false;
}

/**
 * After the swap the new folder is in place: what follows is tidying. A failure there leaves `leftover`
 * (the old folder) for the next write into the parent folder to remove.
 */
function afterCommit(leftover: string | undefined, ...steps: Array<() => void>): void {
  try {
    for (const s of steps) s();
  } catch {
    if (leftover !== undefined && exists(leftover)) abandoned.add(resolve(leftover));
  }
}

/** Errors that say the exchange is not there: no renameat2 (ENOSYS), or a file system without it. */
const NO_EXCHANGE = new Set(["ENOSYS", "EINVAL", "ENOTSUP", "EOPNOTSUPP"]);

/** Swaps `staging` and `target` in one step; false where that is not possible here (then nothing changed). */
async function exchanged(staging: string, target: string, dir: string): Promise<boolean> {
  const libc = await loadLibc();
  const exchange = "unavailable" in libc ? undefined : (libc as { renameExchange?: (from: string, to: string) => void }).renameExchange;
  if (!exchange) return false;
  try {
    exchange.call(libc, staging, target);
    return true;
  } catch (e) {
    if (NO_EXCHANGE.has((e as { code?: string }).code ?? "")) return false;
    discard(staging);
    throw fromSystemError(e, `cannot write ${dir}`);
  }
}

/** Link errors after which a copy serves: no hard links here, too many, or not ours to link (protected_hardlinks). */
const COPY_INSTEAD = new Set(["EPERM", "EXDEV", "EMLINK", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/** Carries every entry of `from` that the new content neither replaces nor holds into `to`, as links. */
function linkEntries(from: string, to: string, replaces: ((name: string) => boolean) | undefined, step: (s: string) => void, prefix: string): void {
  for (const name of readdirSync(from)) {
    if (TEMP.test(name)) continue;
    const src = join(from, name);
    const dst = join(to, name);
    if (exists(dst)) {
      keepFileMode(src, dst);
      continue;
    }
    const st = lstatSync(src);
    if (replaces?.(name)) continue;
    if (st.isDirectory()) {
      mkdirSync(dst);
      adoptPath(st, dst);
      linkEntries(src, dst, undefined, step, `${prefix}${name}/`);
      syncFolder(dst);
    } else if (st.isSymbolicLink()) {
      symlinkSync(readlinkSync(src), dst);
    } else {
      try {
        linkSync(src, dst);
      } catch (e) {
        if (!COPY_INSTEAD.has((e as { code?: string }).code ?? "")) throw e;
        copyFileSync(src, dst, constants.COPYFILE_FICLONE);
        chmodSync(dst, st.mode & 0o7777);
      }
    }
    step(`linked ${prefix}${name}`);
  }
}

/** The fallback for a folder that cannot be swapped: stage inside it, then rename entry by entry. */
async function writeInPlace(target: string, write: (staging: string) => void | Promise<void>, replaces: (name: string) => boolean, step: (s: string) => void): Promise<void> {
  removeStaleTemps(target);
  const staging = tempName(join(target, "staging"));
  try {
    mkdirSync(staging);
    unfinished.add(staging);
    step("staged");
    await write(staging);
    step("written");
    const made = readdirSync(staging);
    for (const name of made) {
      keepFileMode(join(target, name), join(staging, name));
      renameSync(join(staging, name), join(target, name));
    }
    syncFolder(target);
    step("moved in");
    const keep = new Set(made);
    for (const name of readdirSync(target)) if (replaces(name) && !keep.has(name)) discard(join(target, name));
    step("removed old");
  } catch (e) {
    throw fromSystemError(e, `cannot write ${target}`);
  } finally {
    discard(staging);
  }
}
