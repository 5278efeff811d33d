/** Lookups in sorted arrays of offsets. */

/**
 * The index of the last of `starts` (ascending) at or before `x`, or −1 where every one is past it: the range
 * that `x` falls in, when the ranges start at `starts`. A binary search: O(log n).
 *
 * @example
 * ```ts
 * lastAtOrBefore([0, 100, 250], 120); // 1
 * lastAtOrBefore([0, 100, 250], 250); // 2
 * ```
 */
export function lastAtOrBefore(starts: readonly number[], x: number): number {
  let lo = -1;
  for (let hi = starts.length; hi - lo > 1; ) {
    const mid = (lo + hi) >>> 1;
    if (starts[mid]! <= x) lo = mid;
    else hi = mid;
  }
  return lo;
}
