/**
 * The HTTP(S) byte source: a file on a web server or object store, read by ranged GETs through the runtime's
 * `fetch` (Node, Bun and Deno alike, no FFI). `bytes`/`readInto` are synchronous, so they serve only what is
 * already in memory (the first read, and what `prefetch` fetched) and throw `NotFetched` for the rest;
 * `read(offset, length, into)` fetches straight into the caller's buffer (a raw address too, where there is FFI).
 * With a cache, every part that lands is also written into the file's copy there (./cache-writer.ts).
 */
import { SafetensorsError } from "../../errors.ts";
import type { LibC } from "../libc.ts";
import { checkRange, closedError, type ByteSource } from "../source.ts";
import { cacheable, cacheDebug, RemoteCache } from "./cache.ts";
import { CacheWriter } from "./cache-writer.ts";
import { HeldRanges } from "./held-ranges.ts";
import { HttpObject } from "./http-object.ts";
import { Limiter } from "./limiter.ts";
import { evenPartBytes, partsInFlight, resolveRemoteOptions, type RemoteOptions, type ResolvedRemoteOptions } from "./options.ts";
import type { RequestSigner } from "./s3.ts";
import { parseRemoteUrl } from "./url.ts";

/** What one held buffer spans at most: a prefetch of a whole large file is held in pieces (no runtime's limit). */
const HELD_PIECE = 1 << 30;

export interface HttpSource extends ByteSource {
  /** The commit a model hub named in its first answer (`X-Repo-Commit`), if it did. */
  readonly commit?: string;
  /** Fetches `[offset, offset + length)` into memory in parallel parts; rejects with the fetch's error. */
  prefetch(offset: number, length: number): Promise<void>;
  /**
   * The cache's copy of this very version (the first answer's ETag, VersionId and size), when it holds one: a
   * local file to open instead of fetching (then close this source); see ./cache.ts.
   */
  readonly cachedCopy?: string;
  /** The cached copy did not read as its format: it is not served again, and this URL is fetched anew. */
  refuseCachedCopy(): void;
}

/** What several files of one open share: the options, the cap on parts in flight, and libc where there is FFI. */
export interface RemoteTransfers {
  opts: ResolvedRemoteOptions;
  parts: Limiter;
  /** Present where the runtime has FFI: `read()` then fetches straight into raw addresses (a pinned CUDA ring). */
  libc?: LibC;
  /** Signs every request (S3 with credentials). */
  sign?: RequestSigner;
  /** Where fetched files are copied to, and looked for first (the `cache` option). */
  cache?: RemoteCache;
}

/**
 * Options and a part limiter for one open; every file opened with them shares the cap on parts in flight.
 *
 * @example
 * ```ts
 * const transfers = remoteTransfers({ concurrency: 32 }, libcOrUndefined);
 * const [a, b] = await Promise.all(urls.map((u) => openHttpSource(u, transfers)));
 * ```
 */
export function remoteTransfers(options: RemoteOptions = {}, libc?: LibC, sign?: RequestSigner): RemoteTransfers {
  const opts = resolveRemoteOptions(options);
  return { opts, parts: new Limiter(partsInFlight(opts)), libc, sign, cache: opts.cache ? new RemoteCache(opts.cache) : undefined };
}

/**
 * Refuses a side object (an index, `config.json`) over `cap` bytes with `FileTooLarge`, from the size its first
 * answer gave, before any more of it is fetched.
 *
 * @example
 * ```ts
 * refuseOver(source, MAX_INDEX_BYTES);
 * await source.prefetch(0, source.size);
 * ```
 */
export function refuseOver(source: HttpSource, cap: number): void {
  if (source.size > cap) throw new SafetensorsError("FileTooLarge", `${source.path} is ${source.size} bytes, more than the ${cap} allowed`);
}

/**
 * Opens a remote file with one speculative ranged GET of its first `probeBytes` (1 MiB): that learns its size and
 * version, and brings the length prefix and usually the whole header, which `bytes()` then serves.
 *
 * @example
 * ```ts
 * import { openHttpSource } from "tensormap";
 * const src = await openHttpSource("https://example.com/model.safetensors");
 * console.log(src.size, src.bytes(0, 8)); // the header's length, little-endian
 * await src.prefetch(0, src.size); // now every byte is in memory
 * src.close();
 * ```
 */
export async function openHttpSource(url: string, transfers: RemoteTransfers = remoteTransfers()): Promise<HttpSource> {
  const { opts, parts, libc, sign, cache } = transfers;
  const remote = parseRemoteUrl(url);
  const object = new HttpObject(remote, opts, sign);
  const closing = new AbortController();
  const first = new Uint8Array(opts.probeBytes);
  const got = await parts.run(() => object.probe(first, closing.signal));
  const held = new HeldRanges();
  // A small file leaves most of the first read's buffer unused: keep only what came.
  held.add(0, got < first.byteLength ? first.slice(0, got) : first);
  const path = remote.shown;
  const size = object.size;
  let open = true;
  const progress = { asked: got, landed: got };
  const landed = (n: number) => {
    progress.landed += n;
    opts.onProgress?.({ url: path, bytesDone: progress.landed, bytesTotal: progress.asked });
  };
  landed(0);
  const version = object.version!;
  if (cache && !cacheable(version)) cacheDebug(`${path}: the server names no version (ETag, VersionId or Last-Modified): not cached`);
  const entry = cache && cacheable(version) ? await cache.entry(remote) : undefined;
  const cachedCopy = entry && cache!.lookup(entry, version);
  const writer = entry && !cachedCopy ? await CacheWriter.start(entry, version) : undefined;
  await writer?.write(0, first.subarray(0, got));

  const live = () => {
    if (!open) throw closedError(path);
  };
  const heldBytes = (offset: number, length: number): Uint8Array => {
    live();
    checkRange(path, size, offset, length);
    if (length === 0) return new Uint8Array(0);
    const bytes = held.find(offset, length);
    if (!bytes) {
      throw new SafetensorsError("NotFetched", `${path}: bytes ${offset}-${offset + length - 1} are not fetched yet: await prefetch() on the file (or the tensors) first, or fetchSlice() for part of a tensor`);
    }
    return bytes;
  };
  /** Fetches a range into `into` in parallel parts; the first failure stops the others, and all have stopped when it settles. */
  const fetchInto = async (offset: number, length: number, into: Uint8Array): Promise<void> => {
    const failed = new AbortController();
    const signal = AbortSignal.any([closing.signal, failed.signal]);
    const jobs: Promise<void>[] = [];
    progress.asked += length;
    // Parts from a server that ignores Range would each send everything before them: one request then.
    const step = object.ignoresRange ? length : evenPartBytes(length, opts.partBytes, parts.slots);
    for (let at = 0; at < length; at += step) {
      const n = Math.min(step, length - at);
      const part = into.subarray(at, at + n);
      const job = parts.run(async () => {
        if (signal.aborted) throw signal.reason;
        await object.get(offset + at, n, part, signal);
        landed(n);
        // The copy is written outside the part's slot: the next part's request need not wait for the disk.
      }).then(() => writer?.write(offset + at, part));
      jobs.push(job.catch((e) => (failed.abort(e), Promise.reject(e))));
    }
    const results = await Promise.allSettled(jobs);
    if (!open) throw closedError(path);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (rejected) throw failed.signal.reason ?? rejected.reason;
  };

  return {
    backend: "read",
    path,
    size,
    commit: version.commit,
    cachedCopy,
    refuseCachedCopy() {
      if (entry && cachedCopy) cache!.refuse(entry);
    },
    zeroCopy: false,
    bytes: heldBytes,
    readInto(dst, offset) {
      dst.set(heldBytes(offset, dst.byteLength));
    },
    async read(offset, length, into) {
      live();
      checkRange(path, size, offset, length);
      if (typeof into === "bigint" && !libc) throw new SafetensorsError("FfiUnavailable", `${path}: reading into a raw address needs FFI (Bun or Deno with --allow-ffi)`);
      if (typeof into !== "bigint" && (!(into instanceof Uint8Array) || into.byteLength < length)) {
        throw new SafetensorsError("InvalidArgument", `${path}: read of ${length} bytes into a buffer of ${into?.byteLength ?? "no"} bytes`);
      }
      if (length === 0) return;
      // A raw address (a pinned ring slot) is written through a view of it: parts land there, no staging copy.
      const dst = typeof into === "bigint" ? new Uint8Array(libc!.view(into, length)) : into;
      const inMemory = held.find(offset, length);
      if (inMemory) dst.set(inMemory);
      else await fetchInto(offset, length, dst);
    },
    async prefetch(offset, length) {
      live();
      checkRange(path, size, offset, length);
      // Only what is not held yet: the first read often holds the header and the first tensors.
      const pieces: Promise<void>[] = [];
      for (const [from, count] of held.missing(offset, length)) {
        for (let at = 0; at < count; at += HELD_PIECE) {
          const bytes = new Uint8Array(Math.min(HELD_PIECE, count - at));
          pieces.push(fetchInto(from + at, bytes.byteLength, bytes).then(() => held.add(from + at, bytes)));
        }
      }
      const failed = (await Promise.allSettled(pieces)).find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    },
    close() {
      if (!open) return;
      open = false;
      closing.abort(closedError(path));
      held.clear();
      writer?.close();
    },
  };
}
