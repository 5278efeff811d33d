/**
 * Writing a remote file into the cache while it streams: each part, as it lands, is written at its offset into a
 * temporary file beside the copy (`.NAME.tmp-PID-…`, named as ../commit.ts names them, so a later write removes it
 * once its writer is gone); once every byte is there it is fsynced and renamed into place, then its sidecar is
 * written. A copy never finished (a partial load, a failure, a kill) is never renamed in. A cache that cannot be
 * written only loses the copy: the load goes on, and `TENSORMAP_DEBUG` says why.
 */
import { closeSync, fstat, fsync, ftruncateSync, mkdirSync, openSync, write, type Stats } from "node:fs";
import { dirname } from "node:path";
import { commit, discard, removeStaleTemps, tempName, writeAtomic } from "../commit.ts";
import { cacheDebug, sidecarText, type CacheEntry, type RemoteVersion } from "./cache.ts";

/**
 * One copy being written.
 *
 * @example
 * ```ts
 * const writer = CacheWriter.start(entry, version);
 * await writer?.write(0, firstBytes); // …each part as it lands; the copy goes in with the last byte
 * writer?.close(); // an unfinished copy is removed
 * ```
 */
export class CacheWriter {
  readonly #entry: CacheEntry;
  readonly #version: RemoteVersion;
  readonly #tmp: string;
  #fd: number | undefined;
  /** Byte runs written, `[start, end)`, sorted and apart. */
  readonly #written: Array<[number, number]> = [];
  #pending = 0;
  #closed = false;
  #done = false;

  private constructor(entry: CacheEntry, version: RemoteVersion, tmp: string, fd: number) {
    this.#entry = entry;
    this.#version = version;
    this.#tmp = tmp;
    this.#fd = fd;
  }

  /**
   * Opens the temporary file, at the copy's full size, after removing what dead writers left beside it; undefined
   * (and a debug line) where the cache folder cannot be written.
   */
  static async start(entry: CacheEntry, version: RemoteVersion): Promise<CacheWriter | undefined> {
    const folder = dirname(entry.path);
    let tmp: string | undefined;
    let fd: number | undefined;
    try {
      mkdirSync(folder, { recursive: true });
      removeStaleTemps(folder);
      tmp = tempName(entry.path);
      fd = openSync(tmp, "wx", 0o666);
      ftruncateSync(fd, version.size);
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      if (tmp !== undefined) discard(tmp);
      cacheDebug(`${folder}: not writable (${reason(e)}); loading without a cache`);
      return undefined;
    }
    const writer = new CacheWriter(entry, version, tmp, fd);
    if (version.size === 0) await writer.#finish();
    return writer;
  }

  /**
   * Writes bytes that landed at `offset`; resolves once they are written (the caller may reuse `bytes` then),
   * and once the copy is in place when they were its last. Never rejects: a failed write drops the copy.
   */
  async write(offset: number, bytes: Uint8Array): Promise<void> {
    // Once the copy is whole no write starts: the descriptor is being synced and closed.
    if (this.#fd === undefined || this.#closed || this.#done || bytes.byteLength === 0) return;
    this.#pending++;
    try {
      await writeAt(this.#fd, bytes, offset);
      this.#mark(offset, offset + bytes.byteLength);
    } catch (e) {
      this.#fail(e);
    } finally {
      this.#pending--;
    }
    const whole = this.#written.length === 1 && this.#written[0]![0] === 0 && this.#written[0]![1] >= this.#version.size;
    if (this.#closed || this.#fd === undefined) this.#drop();
    else if (whole && this.#pending === 0 && !this.#done) await this.#finish();
  }

  /** Stops writing; a copy not finished is removed (once writes in flight are over). */
  close(): void {
    this.#closed = true;
    if (this.#pending === 0) this.#drop();
  }

  #mark(start: number, end: number): void {
    const runs = this.#written;
    let i = 0;
    while (i < runs.length && runs[i]![1] < start) i++;
    let j = i;
    while (j < runs.length && runs[j]![0] <= end) {
      start = Math.min(start, runs[j]![0]);
      end = Math.max(end, runs[j]![1]);
      j++;
    }
    runs.splice(i, j - i, [start, end]);
  }

  /** Every byte is there: fsync, rename into place, then the sidecar naming this version and this file. */
  async #finish(): Promise<void> {
    this.#done = true;
    const fd = this.#fd!;
    try {
      await new Promise<void>((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));
      const st = await new Promise<Stats>((resolve, reject) => fstat(fd, (e, s) => (e ? reject(e) : resolve(s))));
      this.#fd = undefined;
      closeSync(fd);
      // Whoever reads the sidecar in between finds it naming another file: a miss, never a wrong copy.
      commit(this.#tmp, this.#entry.path);
      writeAtomic(this.#entry.sidecar, [new TextEncoder().encode(sidecarText(this.#entry, this.#version, st))]);
    } catch (e) {
      this.#fail(e);
    }
  }

  #fail(e: unknown): void {
    if (this.#done && this.#fd !== undefined) {
      // Failed while being put in place: the descriptor is still this writer's to close.
      closeSync(this.#fd);
      this.#fd = undefined;
      discard(this.#tmp);
    }
    cacheDebug(`${this.#entry.path}: not cached (${reason(e)}); loading on without it`);
    this.#drop();
  }

  /** Closes and removes the temporary file, unless it is being put in place (that finishes on its own). */
  #drop(): void {
    if (this.#fd === undefined || this.#done) return;
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // The descriptor's error changes nothing: the temp goes either way.
    }
    discard(this.#tmp);
  }
}

/** What a debug line says of a failure: its system error code, or the error itself. */
function reason(e: unknown): string {
  return (e as { code?: string }).code ?? String(e);
}

/** Writes all of `bytes` at `position`, off the event loop (the runtime's thread pool). */
async function writeAt(fd: number, bytes: Uint8Array, position: number): Promise<void> {
  for (let at = 0; at < bytes.byteLength; ) {
    at += await new Promise<number>((resolve, reject) =>
      write(fd, bytes, at, bytes.byteLength - at, position + at, (e, n) => (e ? reject(e) : resolve(n))),
    );
  }
}
