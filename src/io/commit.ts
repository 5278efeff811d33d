/**
 * Writing files and folders so that a reader, or the next process after a crash or a SIGKILL, finds either
 * the old content or the new, whole. A file is written to a temporary sibling, fsynced and renamed over
 * its target.
 *
 * Temporary names say who made them: `.NAME.tmp-PID-START-HOST-RANDOM`, with the writer's process id, its start time (clock ticks since boot, from /proc, so a reused
 * process id does not pass for the writer) and a hash of the host name (a folder shared over the network or
 * between containers holds other hosts' process ids). Every write into a folder first removes what writers
 * on this host that are gone left there.
 */
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync, fchmodSync, fchownSync, fstatSync, fsyncSync, lstatSync, openSync, readdirSync, readFileSync, renameSync,
  rmSync, statSync, writeSync, type Stats,
} from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fromSystemError } from "../errors.ts";

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

const PID = process.pid;
const START = startTime("self") ?? "0";
const HOST = createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
const HAS_PROC = START !== "0";

/** Temporary names: `.NAME.tmp-PID-START-HOST-RANDOM`. */
const TEMP = /^\.(.+)\.tmp-(\d+)-(\d+)-([0-9a-f]{8})-([0-9a-f]{8})$/;

/** A name's part in a temporary name, short enough that the whole stays under 255 bytes. */
function namePart(name: string): string {
  let out = "";
  for (const c of name) {
    if (Buffer.byteLength(out + c) > 200) break;
    out += c;
  }
  return out;
}


/**
 * A name beside `path` for a temporary file or folder that a later write recognises, and removes once its
 * writer is gone.
 *
 * @example
 * ```ts
 * tempName("out/model.safetensors"); // "out/.model.safetensors.tmp-4242-91234-3fa2b1c0-9e1d07aa"
 * ```
 */
export function tempName(path: string): string {
  return join(dirname(path), `.${namePart(basename(path))}.tmp-${PID}-${START}-${HOST}-${randomBytes(4).toString("hex")}`);
}

/** Whether the process that made a temporary name may still be writing it. */
function writerAlive(pid: number, start: string, host: string): boolean {
  // Another host's process ids mean nothing here: its files are left alone.
  if (host !== HOST) return true;
  if (pid === PID) return start === START;
  if (HAS_PROC) return startTime(pid) === start;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/** Temporary files and folders of this process that it gave up on: a later write removes them, like a dead writer's. */
const abandoned = new Set<string>();

/** Removes a file or a whole folder, never throwing: what cannot go now goes at a later write. */
function remove(path: string): void {
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
 * Removes the temporary files that writers that are gone left in `folder`. Files of live writers and of
 * other hosts are left alone; nothing here throws.
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
  for (const name of names) {
    const m = TEMP.exec(name);
    if (m && (!writerAlive(Number(m[2]), m[3]!, m[4]!) || abandoned.has(resolve(folder, name)))) remove(join(folder, name));
  }
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
    remove(tmp);
    throw fromSystemError(e, `cannot write ${path}`);
  }
}

/** Gives a new file the mode of the one it replaces, and its owner where this process may. */
function adopt(replaced: Stats, own: Stats, chmod: (mode: number) => void, chown: (uid: number, gid: number) => void): void {
  chmod(replaced.mode & 0o7777);
  if (own.uid === replaced.uid && own.gid === replaced.gid) return;
  try {
    chown(replaced.uid, replaced.gid);
  } catch {
    // Only root may give a file away; it is then ours, as a copy made by this user would be.
  }
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
    remove(tmp);
    throw fromSystemError(e, `cannot write ${path}`);
  }
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
