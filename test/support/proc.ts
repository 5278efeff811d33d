import { readFileSync } from "node:fs";

/**
 * Bytes of the mapping starting at `addr` that are mapped into this process (`Rss` in /proc/self/smaps):
 * pages faulted or populated in, not merely in the page cache.
 *
 * @example
 * ```ts
 * expect(mappedBytes(src.pointer(0))).toBe(0);
 * ```
 */
export function mappedBytes(addr: bigint): number {
  const lines = readFileSync("/proc/self/smaps", "utf8").split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${addr.toString(16)}-`));
  if (at < 0) throw new Error(`no mapping starts at 0x${addr.toString(16)}`);
  const rss = lines.slice(at + 1).find((l) => l.startsWith("Rss:"))!;
  return Number(/(\d+) kB/.exec(rss)![1]) * 1024;
}
