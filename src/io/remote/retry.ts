/** When a failed request is tried again, and how long to wait first. */

/**
 * Statuses worth another try: a timeout (408), throttling (429) and server errors (5xx). Everything else
 * (401, 403, 404, other 4xx) fails at once: trying again cannot change the answer.
 *
 * @example
 * ```ts
 * retryableStatus(503); // true
 * retryableStatus(404); // false
 * ```
 */
export function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Milliseconds a `Retry-After` header asks for (seconds, or an HTTP date), or undefined when absent or unreadable.
 *
 * @example
 * ```ts
 * retryAfterMs("2"); // 2000
 * ```
 */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Full-jitter exponential backoff: a random wait in `[0, min(cap, base·2^attempt))`, so parts that failed together
 * do not come back together.
 *
 * @example
 * ```ts
 * backoffMs(3, 100, 5000); // somewhere below 800
 * ```
 */
export function backoffMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}
