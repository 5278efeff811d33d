/** How remote checkpoints are fetched: part size, parallelism, patience. */
import { readEnv } from "../../../ffi/runtime.ts";
import { SafetensorsError } from "../../errors.ts";

export interface RemoteOptions {
  /** Bytes per ranged GET when fetching tensors (default 8 MiB). */
  partBytes?: number;
  /** Ranged GETs in flight at once, over every file of one open (default 16). */
  concurrency?: number;
  /** Cap on bytes being fetched at once (default 256 MiB); never below one part. */
  maxInFlightBytes?: number;
  /**
   * Byte runs (a slice's, a rank's part's rows) at most this far apart are fetched as one ranged GET, the gap's
   * bytes fetched and dropped (default 4096: a rank fetches at most its share plus a page per run). Row-parallel
   * loads from high-latency object storage at large world sizes want more (1 MiB ≈ a request's latency × a
   * connection's rate): bytes traded for far fewer requests.
   */
  gapBytes?: number;
  /** Bytes asked for by the first, speculative GET: the length prefix and, for most files, the whole header (default 1 MiB). */
  probeBytes?: number;
  /** A request that delivers no byte for this long is abandoned and tried again (default 30 s). */
  timeoutMs?: number;
  /** A part still not fetched this long after its first try fails (default 120 s). */
  partDeadlineMs?: number;
  /** Tries of one part after the first (default 8). */
  retries?: number;
  /** The first backoff's upper bound; each retry doubles it, up to 10 s (default 200 ms). */
  backoffMs?: number;
  /**
   * Extra request headers. A redirect to another origin (a CDN) goes without `Authorization`, as `fetch` does on
   * Node, Bun and Deno; other headers follow it.
   */
  headers?: Record<string, string>;
  /**
   * Called as each part of a file lands (the first, speculative read included), on the event loop, never more
   * than once per part. Per file: `bytesDone` of the `bytesTotal` bytes asked of it so far, both only growing
   * (`bytesTotal` grows as a prefetch or a read starts); the two are equal once all that was asked for has landed
   * (a failed fetch's bytes stay counted in `bytesTotal` only). A file the cache serves reports its first read only.
   */
  onProgress?: (progress: RemoteProgress) => void;
  /**
   * A folder for local copies of fetched files (default `TENSORMAP_CACHE`; `false`: none, whatever it says). A
   * file fetched whole is written there while it streams and goes in once every byte is there; the next open of
   * its URL, when the remote answers with the same version (ETag, VersionId, size), opens the copy as a local
   * file instead. A folder that cannot be written only means no copy (`TENSORMAP_DEBUG` says why).
   */
  cache?: string | false;
}

/** One file's progress: `url` as it may be shown (no credentials, no query), bytes landed, bytes asked for. */
export interface RemoteProgress {
  url: string;
  bytesDone: number;
  bytesTotal: number;
}

export type ResolvedRemoteOptions = Required<Omit<RemoteOptions, "onProgress">> & Pick<RemoteOptions, "onProgress">;

/** The cache folder options or the environment name: `TENSORMAP_CACHE` unless the options say (`false`: none). */
function cacheFolder(cache: string | false | undefined): string | false {
  if (cache === undefined) return readEnv("TENSORMAP_CACHE") || false;
  if (cache !== false && (typeof cache !== "string" || cache === "")) throw new SafetensorsError("InvalidArgument", "remote option cache must be a folder or false");
  return cache;
}

const DEFAULTS: ResolvedRemoteOptions = {
  partBytes: 8 << 20,
  concurrency: 16,
  maxInFlightBytes: 256 << 20,
  probeBytes: 1 << 20,
  gapBytes: 4096,
  timeoutMs: 30_000,
  partDeadlineMs: 120_000,
  retries: 8,
  backoffMs: 200,
  headers: {},
  onProgress: undefined,
  cache: false,
};

/**
 * Fills in defaults and refuses values that cannot work (`InvalidArgument`).
 *
 * @example
 * ```ts
 * resolveRemoteOptions({ partBytes: 16 << 20 }).concurrency; // 16
 * ```
 */
export function resolveRemoteOptions(opts: RemoteOptions = {}): ResolvedRemoteOptions {
  const out = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)), cache: cacheFolder(opts.cache) } as ResolvedRemoteOptions;
  for (const key of ["partBytes", "concurrency", "maxInFlightBytes", "probeBytes"] as const) {
    if (!Number.isSafeInteger(out[key]) || out[key] < 1) throw new SafetensorsError("InvalidArgument", `remote option ${key} must be a positive integer, got ${out[key]}`);
  }
  if (!Number.isSafeInteger(out.gapBytes) || out.gapBytes < 0) throw new SafetensorsError("InvalidArgument", `remote option gapBytes must be an integer ≥ 0, got ${out.gapBytes}`);
  for (const key of ["timeoutMs", "partDeadlineMs", "retries", "backoffMs"] as const) {
    if (!(out[key] >= 0)) throw new SafetensorsError("InvalidArgument", `remote option ${key} must be a number ≥ 0, got ${out[key]}`);
  }
  if (out.onProgress !== undefined && typeof out.onProgress !== "function") throw new SafetensorsError("InvalidArgument", "remote option onProgress must be a function");
  return out;
}

/**
 * Parts in flight at once under these options: `concurrency`, fewer when `maxInFlightBytes` holds fewer parts,
 * never none.
 *
 * @example
 * ```ts
 * partsInFlight(resolveRemoteOptions({ maxInFlightBytes: 1 })); // 1
 * ```
 */
export function partsInFlight(opts: ResolvedRemoteOptions): number {
  return Math.max(1, Math.min(opts.concurrency, Math.floor(opts.maxInFlightBytes / opts.partBytes)));
}

/**
 * The part size for a fetch of `length` bytes: at most `partBytes`, and, where parts at least half that size allow
 * it, a part count that fills every round of `slots` parts in flight. Parts of exactly `partBytes` leave the last
 * round part-empty (116 parts in 16 slots: a last round of 4 paced connections), and a round costs a part's time.
 *
 * @example
 * ```ts
 * evenPartBytes(116 * 8 << 20, 8 << 20, 16); // 128 parts of 7.25 MiB instead of 116 of 8 MiB
 * ```
 */
export function evenPartBytes(length: number, partBytes: number, slots: number): number {
  const fixed = Math.ceil(length / partBytes);
  const even = Math.ceil(fixed / slots) * slots;
  return even <= 2 * fixed ? Math.ceil(length / even) : partBytes;
}
