/**
 * The local cache of remote files (`remote: { cache: DIR }`, or `TENSORMAP_CACHE`): one folder per remote object,
 * named by a hash of its URL without credentials or query, holding the file under its own name and a sidecar
 * (`NAME.remote.json`) with the remote version it is a copy of (URL, size, ETag, S3 VersionId, Last-Modified, Hub
 * commit) and which file on disk it describes (inode, size, modification time).
 *
 * ```text
 * DIR/3fa2b1c09e1d07aa/model-00001-of-00003.safetensors
 * DIR/3fa2b1c09e1d07aa/model-00001-of-00003.safetensors.remote.json
 * ```
 *
 * A copy is used only when its sidecar names the version the remote answers with now and the file it sits
 * beside (so a copy replaced or cut short since is not); {@link CacheWriter} writes copies.
 */
import { statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { readEnv } from "../../../ffi/runtime.ts";
import { discard } from "../commit.ts";
import { readSmallFile } from "../small-file.ts";
import type { RemoteUrl } from "./url.ts";

/** What names one version of a remote object: its size, and the ETag, VersionId or date the server gave. */
export interface RemoteVersion {
  size: number;
  /** A strong ETag (a weak one promises equivalent content, not the same bytes). */
  etag?: string;
  /** S3's `x-amz-version-id`. */
  versionId?: string;
  lastModified?: string;
  /** A model hub's `X-Repo-Commit`: kept for the record, not compared (a new commit need not change the file). */
  commit?: string;
}

/** The sidecar beside a cached copy. */
interface Sidecar {
  url: string;
  version: RemoteVersion;
  /** The file it describes: inode, size and whole milliseconds of its modification time. */
  file: { ino: number; size: number; mtimeMs: number };
}

/** A sidecar is a few hundred bytes; this only bounds what a wrong file costs. */
const MAX_SIDECAR = 64 << 10;

/** Where one remote object's copy lives. */
export interface CacheEntry {
  /** The copy, under the name the object has remotely. */
  path: string;
  /** `NAME.remote.json` beside it. */
  sidecar: string;
  /** The object's URL without credentials or query: what the folder's name is a hash of. */
  url: string;
}

/**
 * Whether a version can be recognised again: without an ETag, a VersionId or a date, a copy could not be told
 * from a newer object of the same size.
 *
 * @example
 * ```ts
 * cacheable({ size: 10 }); // false
 * cacheable({ size: 10, etag: '"abc"' }); // true
 * ```
 */
export function cacheable(v: RemoteVersion): boolean {
  return v.etag !== undefined || v.versionId !== undefined || v.lastModified !== undefined;
}

/**
 * Whether two versions are the same object: the same size, and the same ETag and VersionId (the date only
 * where the server gave neither).
 *
 * @example
 * ```ts
 * sameVersion({ size: 4, etag: '"a"' }, { size: 4, etag: '"a"', lastModified: "…" }); // true
 * ```
 */
export function sameVersion(a: RemoteVersion, b: RemoteVersion): boolean {
  if (a.size !== b.size || a.etag !== b.etag || a.versionId !== b.versionId) return false;
  return a.etag !== undefined || a.versionId !== undefined || a.lastModified === b.lastModified;
}

/**
 * The cache in one folder. Lookups never throw: an entry that cannot be read is a miss.
 *
 * @example
 * ```ts
 * const cache = new RemoteCache("/var/cache/tensormap");
 * const entry = await cache.entry(parseRemoteUrl(url));
 * const copy = cache.lookup(entry, { size: 1234, etag: '"abc"' }); // its path, or undefined
 * ```
 */
export class RemoteCache {
  readonly dir: string;
  /** Copies found unusable in this process (their header did not parse): never served again. */
  readonly #refused = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Where the copy of `url` lives (nothing is read or made). */
  async entry(url: RemoteUrl): Promise<CacheEntry> {
    const u = new URL(url.href);
    const key = `${u.origin}${u.pathname}`;
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)));
    const folder = [...hash.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const path = join(this.dir, folder, fileName(u.pathname));
    return { path, sidecar: `${path}.remote.json`, url: key };
  }

  /**
   * The copy's path when its sidecar names this URL at `version` and the file beside it is the one it describes
   * (same inode, size and date: not replaced or cut short since); undefined otherwise.
   */
  lookup(entry: CacheEntry, version: RemoteVersion): string | undefined {
    const side = readSidecar(entry.sidecar);
    if (!side || side.url !== entry.url || !sameVersion(side.version, version)) return undefined;
    const st = statOf(entry.path);
    if (!st?.isFile() || st.size !== version.size || st.ino !== side.file.ino || st.size !== side.file.size || Math.trunc(st.mtimeMs) !== side.file.mtimeMs) {
      return undefined;
    }
    return this.#refused.has(refusalKey(entry.path, st.ino, side.file.mtimeMs)) ? undefined : entry.path;
  }

  /**
   * Stops serving a copy that turned out unusable (its header did not parse): its sidecar goes, so no process
   * uses it, and where it cannot go this process still never serves it again.
   */
  refuse(entry: CacheEntry): void {
    const st = statOf(entry.path);
    if (st) this.#refused.add(refusalKey(entry.path, st.ino, Math.trunc(st.mtimeMs)));
    cacheDebug(`${entry.path}: a cached copy that does not read as its format; fetching it again`);
    discard(entry.sidecar);
  }
}

/**
 * The sidecar a finished copy gets.
 *
 * @example
 * ```ts
 * writeFileSync(entry.sidecar, sidecarText(entry, version, fstatSync(fd)));
 * ```
 */
export function sidecarText(entry: CacheEntry, version: RemoteVersion, file: { ino: number; size: number; mtimeMs: number }): string {
  const side: Sidecar = { url: entry.url, version, file: { ino: file.ino, size: file.size, mtimeMs: Math.trunc(file.mtimeMs) } };
  return `${JSON.stringify(side, null, 1)}\n`;
}

/**
 * With `TENSORMAP_DEBUG=1`, a line on stderr about the cache: why a copy was not used, or not written.
 *
 * @example
 * ```ts
 * cacheDebug("/ro/cache: not writable (EROFS); loading without a cache");
 * ```
 */
export function cacheDebug(message: string): void {
  // Deno without --allow-env for it: no debug output, and no permission prompt.
  const v = readEnv("TENSORMAP_DEBUG");
  if (v !== undefined && v !== "" && v !== "0") process.stderr.write(`tensormap: cache: ${message}\n`);
}

/** A path's stat, or undefined where there is none or it cannot be read (a copy that cannot be read is a miss). */
function statOf(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function refusalKey(path: string, ino: number, mtimeMs: number): string {
  return `${path}\0${ino}\0${mtimeMs}`;
}

/** The object's own name, made safe as one file name (no separator, NUL, or `.`/`..`). */
function fileName(pathname: string): string {
  let name: string;
  try {
    name = decodeURIComponent(pathname.split("/").at(-1) ?? "");
  } catch {
    name = pathname.split("/").at(-1) ?? "";
  }
  name = name.replace(/[/\\\0]/g, "_").slice(0, 200);
  return name === "" || name === "." || name === ".." ? "file" : name;
}

/** A sidecar's content when it is one this module wrote: any other file (cut short, edited, foreign) is none. */
function readSidecar(path: string): Sidecar | undefined {
  try {
    const side = JSON.parse(new TextDecoder().decode(readSmallFile(path, MAX_SIDECAR))) as Sidecar;
    const v = side?.version;
    const f = side?.file;
    const text = (x: unknown) => x === undefined || typeof x === "string";
    const whole = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    if (typeof side.url !== "string" || !v || !whole(v.size) || ![v.etag, v.versionId, v.lastModified, v.commit].every(text)) return undefined;
    if (!f || !whole(f.ino) || !whole(f.size) || !whole(f.mtimeMs)) return undefined;
    return side;
  } catch {
    return undefined;
  }
}
