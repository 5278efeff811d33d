/**
 * One remote object fetched by byte ranges, pinned to one version: the first answer's `ETag` (or, without one, its
 * `Last-Modified`) goes with every later request as `If-Match` (`If-Unmodified-Since`), so an object replaced
 * mid-load answers 412 and fails with `FileChanged` instead of mixing old bytes with new.
 */
import { SafetensorsError } from "../../errors.ts";
import type { RemoteVersion } from "./cache.ts";
import type { ResolvedRemoteOptions } from "./options.ts";
import type { RequestSigner } from "./s3.ts";
import { backoffMs, retryableStatus, retryAfterMs } from "./retry.ts";
import type { RemoteUrl } from "./url.ts";

/** Longest wait between two tries, whatever the backoff or `Retry-After` say (the part deadline still holds). */
const MAX_BACKOFF_MS = 10_000;

/** A failure worth another try, with how long the server asked to wait. Never leaves this module. */
class Transient extends Error {
  readonly waitMs: number | undefined;

  // Written out, not a parameter property: Node 26 runs the sources by stripping types only.
  constructor(message: string, waitMs?: number) {
    super(message);
    this.waitMs = waitMs;
  }
}

/**
 * The HTTP status of a `RemoteError`, where the server answered (404 for a file that is not there).
 *
 * @example
 * ```ts
 * try { await obj.probe(buf); } catch (e) { if (remoteStatus(e) === 404) tryNextName(); }
 * ```
 */
export function remoteStatus(e: unknown): number | undefined {
  if (!(e instanceof SafetensorsError) || e.code !== "RemoteError") return undefined;
  const cause = e.cause as { status?: unknown } | undefined;
  return typeof cause?.status === "number" ? cause.status : undefined;
}

/**
 * Ranged GETs of one URL, retried part by part and resumed from the bytes already received.
 *
 * @example
 * ```ts
 * const obj = new HttpObject(parseRemoteUrl(url), resolveRemoteOptions());
 * const head = new Uint8Array(1 << 20);
 * const got = await obj.probe(head); // obj.size is known from here on
 * ```
 */
export class HttpObject {
  readonly url: RemoteUrl;
  readonly #opts: ResolvedRemoteOptions;
  readonly #sign?: RequestSigner;
  /** Total size, from the first answer. */
  size = -1;
  /** The version the first answer named: what a cached copy must match. */
  version?: RemoteVersion;
  /** The server answered a ranged GET with the whole object (200): each request then costs the bytes up to its end. */
  ignoresRange = false;
  #etag?: string;
  #lastModified?: string;

  /** `sign`: adds a signature to each request (S3), from its URL and Range. */
  constructor(url: RemoteUrl, opts: ResolvedRemoteOptions, sign?: RequestSigner) {
    this.url = url;
    this.#opts = opts;
    this.#sign = sign;
  }

  /**
   * The first request: the first `into.byteLength` bytes (fewer when the object is smaller). Learns the size and
   * the version every later request is pinned to. Resolves to the count of bytes placed in `into`.
   */
  async probe(into: Uint8Array, signal?: AbortSignal): Promise<number> {
    await this.get(0, into.byteLength, into, signal);
    return Math.min(into.byteLength, this.size);
  }

  /**
   * Bytes `[offset, offset + length)` into `into` (clipped to the object's end while its size is unknown), retried
   * on resets, timeouts, 408, 429 and 5xx with jittered exponential backoff until the part deadline; a try cut
   * short resumes where it stopped. Other answers fail at once (`RemoteError`, `FileChanged` for 412).
   */
  async get(offset: number, length: number, into: Uint8Array, signal?: AbortSignal): Promise<void> {
    const started = Date.now();
    const deadline = started + this.#opts.partDeadlineMs;
    let done = 0;
    for (let attempt = 0; ; attempt++) {
      const got = { n: 0 };
      try {
        await this.#attempt(offset + done, length - done, into.subarray(done, length), got, deadline, signal);
        done += got.n;
        if (done >= this.#want(offset, length)) return;
        throw new Transient(`the answer ended after ${done} of ${this.#want(offset, length)} bytes`);
      } catch (e) {
        if (!(e instanceof Transient)) throw e;
        done += got.n;
        const wait = Math.min(MAX_BACKOFF_MS, e.waitMs ?? backoffMs(attempt, this.#opts.backoffMs, MAX_BACKOFF_MS));
        const spent = Date.now() - started;
        if (attempt >= this.#opts.retries || spent + wait > this.#opts.partDeadlineMs) {
          const tries = `${attempt + 1} ${attempt === 0 ? "try" : "tries"} in ${(spent / 1000).toFixed(1)} s`;
          throw new SafetensorsError("RemoteError", `${this.url.shown}: bytes ${offset}-${offset + length - 1} not fetched after ${tries}: ${e.message}`);
        }
        await sleep(wait, signal);
      }
    }
  }

  /** How many of `length` bytes at `offset` exist, once the size is known. */
  #want(offset: number, length: number): number {
    return this.size < 0 ? length : Math.max(0, Math.min(length, this.size - offset));
  }

  /**
   * One request, abandoned after `timeoutMs` without a byte or at the part's `deadline` (a trickle of bytes must
   * not hold a part for ever). Adds to `got.n` as bytes land in `into`, so a failed try still says how far it came.
   */
  async #attempt(offset: number, length: number, into: Uint8Array, got: { n: number }, deadline: number, signal?: AbortSignal): Promise<void> {
    if (length <= 0 || (this.size >= 0 && offset >= this.size)) return;
    const idle = new AbortController();
    let late = false;
    const arm = () =>
      setTimeout(() => {
        late = Date.now() >= deadline;
        idle.abort();
      }, Math.max(0, Math.min(this.#opts.timeoutMs, deadline - Date.now())));
    let timer = arm();
    const rearm = () => {
      clearTimeout(timer);
      timer = arm();
    };
    const abort = signal ? AbortSignal.any([signal, idle.signal]) : idle.signal;
    const stalled = () => new Transient(late ? `still not complete at the part deadline (${this.#opts.partDeadlineMs} ms)` : `no byte for ${this.#opts.timeoutMs} ms`);
    try {
      let res: Response;
      try {
        const headers = this.#headers(offset, length);
        // Only Range is signed: a header the runtime might rewrite (Accept-Encoding) must stay out of the signature.
        if (this.#sign) Object.assign(headers, await this.#sign(this.url.href, { range: headers.range! }));
        res = await fetch(this.url.href, { headers, signal: abort, redirect: "follow" });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (idle.signal.aborted) throw stalled();
        const why = describe(e);
        if (cannotReach(e, why)) throw new SafetensorsError("RemoteError", `${this.url.shown}: ${why}`);
        throw new Transient(why);
      }
      const start = this.#check(res, offset);
      const body = res.body?.getReader();
      if (!body) throw new Transient("the answer has no body");
      try {
        // `pos`: the offset in the object of the next byte the body gives (a 200 starts at 0: skip to `offset`).
        for (let pos = start; got.n < Math.min(length, this.size - offset); ) {
          rearm();
          const { done, value } = await body.read();
          if (done) return;
          const from = Math.max(0, offset + got.n - pos);
          const take = Math.min(value.byteLength - from, length - got.n);
          if (take > 0) {
            into.set(value.subarray(from, from + take), got.n);
            got.n += take;
          }
          pos += value.byteLength;
        }
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof SafetensorsError || e instanceof Transient) throw e;
        throw idle.signal.aborted ? stalled() : new Transient(describe(e));
      } finally {
        // Whatever is left (all of an object whose server ignored Range) is never read.
        body.cancel().catch(() => {});
      }
    } finally {
      clearTimeout(timer);
    }
  }

  #headers(offset: number, length: number): Record<string, string> {
    const h: Record<string, string> = { ...this.#opts.headers, range: `bytes=${offset}-${offset + length - 1}`, "accept-encoding": "identity" };
    if (this.url.authorization) h.authorization = this.url.authorization;
    if (this.#etag) h["if-match"] = this.#etag;
    else if (this.#lastModified) h["if-unmodified-since"] = this.#lastModified;
    return h;
  }

  /** Checks an answer's status, size and version; returns the object offset its body starts at. */
  #check(res: Response, offset: number): number {
    const fail = (code: "RemoteError" | "FileChanged", why: string) => {
      res.body?.cancel().catch(() => {});
      const id = res.headers.get("x-amz-request-id") ?? res.headers.get("x-request-id");
      const message = `${this.url.shown}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}: ${why}${id ? ` (request id ${id})` : ""}`;
      return new SafetensorsError(code, message, { cause: { status: res.status, requestId: id } });
    };
    if (res.status === 412 || (res.status === 416 && this.size >= 0)) {
      throw fail("FileChanged", "the object changed since it was opened (its ETag or date no longer match); open it again");
    }
    let total: number;
    let start = 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== offset) throw fail("RemoteError", `a range answer for the wrong bytes (${res.headers.get("content-range")}, asked from ${offset})`);
      [start, total] = [Number(m[1]), Number(m[3])];
    } else if (res.status === 200) {
      // The server ignored Range and sends the whole object: read up to the part, then cancel the rest.
      this.ignoresRange = true;
      total = Number(res.headers.get("content-length") ?? NaN);
      if (!Number.isSafeInteger(total)) throw fail("RemoteError", "the server ignores Range and gives no Content-Length");
    } else if (res.status === 416) {
      const m = /^bytes \*\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
      if (!m) throw fail("RemoteError", "range not satisfiable, and no size given");
      total = Number(m[1]);
    } else if (retryableStatus(res.status)) {
      res.body?.cancel().catch(() => {});
      throw new Transient(`HTTP ${res.status}`, retryAfterMs(res.headers.get("retry-after")));
    } else {
      throw fail("RemoteError", refusal(res.status));
    }
    const etag = res.headers.get("etag") ?? undefined;
    if (this.size < 0) {
      this.size = total;
      const header = (name: string) => res.headers.get(name) ?? undefined;
      const lastModified = header("last-modified");
      // A weak ETag cannot be matched with If-Match (strong comparison only): the date pins the version then.
      if (etag && !etag.startsWith("W/")) this.#etag = etag;
      else this.#lastModified = lastModified;
      this.version = { size: total, etag: this.#etag, versionId: header("x-amz-version-id"), lastModified, commit: header("x-repo-commit") };
    } else if (total !== this.size || (this.#etag && etag && etag !== this.#etag)) {
      throw fail("FileChanged", `the object changed since it was opened (${total} bytes, ETag ${etag}; it was ${this.size} bytes, ETag ${this.#etag}); open it again`);
    }
    return start;
  }
}

/** Why an answer that is not retried failed, in words. */
function refusal(status: number): string {
  if (status === 404 || status === 410) return "no such object";
  if (status === 401 || status === 403) return "access refused (credentials missing or not allowed)";
  return status >= 300 && status < 400 ? "a redirect that was not followed" : "the request was refused";
}

/**
 * A network failure in one line: fetch's "fetch failed" says little, its cause (ECONNRESET, …) says what. A URL in
 * it (Deno names the one requested, query and all) is left out: the message names the URL as it may be shown.
 */
/**
 * Failures another try cannot mend: Deno refusing the network for want of `--allow-net`, a host name that does
 * not exist (`ENOTFOUND`; a resolver that is only struggling says `EAI_AGAIN`, which is retried), and a
 * certificate the runtime does not trust (Node's `…_CERT…`/`UNABLE_TO_VERIFY_…` codes, Bun's and Deno's words).
 */
function cannotReach(e: unknown, why: string): boolean {
  const name = (e as { name?: string })?.name;
  if (name === "NotCapable" || name === "PermissionDenied") return true;
  return /\bENOTFOUND\b|Name or service not known|nodename nor servname|certificate|_CERT\b|\bCERT_|_CERT_|UNABLE_TO_VERIFY|ALTNAME/i.test(why);
}

function describe(e: unknown): string {
  const err = e as { message?: string; cause?: { code?: string; message?: string } };
  const cause = err?.cause?.code ?? err?.cause?.message;
  return `${err?.message ?? String(e)}${cause ? ` (${cause})` : ""}`.split("\n")[0]!.replace(/\bhttps?:\/\/[^\s)]*/gi, "the URL");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      signal?.removeEventListener("abort", stop);
      resolve();
    };
    const stop = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}
