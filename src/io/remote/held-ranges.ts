/**
 * Byte ranges of a remote object already fetched into memory, found by offset. Ranges may overlap (reads of
 * ranges already held); a prefetch fetches only what {@link HeldRanges.missing} says is not.
 *
 * @example
 * ```ts
 * const held = new HeldRanges();
 * held.add(0, bytes);
 * held.find(8, 100); // a view of bytes 8..108, or undefined when no one range holds them
 * ```
 */
export class HeldRanges {
  /** Sorted by start. */
  readonly #ranges: Array<{ start: number; bytes: Uint8Array }> = [];

  add(start: number, bytes: Uint8Array): void {
    let i = this.#ranges.length;
    while (i > 0 && this.#ranges[i - 1]!.start > start) i--;
    this.#ranges.splice(i, 0, { start, bytes });
  }

  /**
   * `[offset, offset + length)`: a view where one held range has all of it, a copy gathered from ranges that
   * meet or overlap end to end, or undefined where a byte is missing.
   */
  find(offset: number, length: number): Uint8Array | undefined {
    // The last range starting at or before `offset`, then earlier ones (an earlier, longer range may hold it).
    let lo = 0;
    let hi = this.#ranges.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ranges[mid]!.start <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo - 1; i >= 0; i--) {
      const { start, bytes } = this.#ranges[i]!;
      if (offset + length <= start + bytes.byteLength) return bytes.subarray(offset - start, offset - start + length);
    }
    return this.#gather(offset, length);
  }

  /** The parts of `[offset, offset + length)` that no held range covers, as `[start, length]`, in order. */
  missing(offset: number, length: number): Array<[number, number]> {
    const gaps: Array<[number, number]> = [];
    const end = offset + length;
    let at = offset;
    for (const { start, bytes } of this.#ranges) {
      if (at >= end || start >= end) break;
      if (start > at) gaps.push([at, start - at]);
      at = Math.max(at, start + bytes.byteLength);
    }
    if (at < end) gaps.push([at, end - at]);
    return gaps;
  }

  /** Copies a range that no one held range covers from several, in start order; undefined at the first gap. */
  #gather(offset: number, length: number): Uint8Array | undefined {
    const out = new Uint8Array(length);
    let at = offset;
    for (const { start, bytes } of this.#ranges) {
      if (start > at) break;
      const end = Math.min(start + bytes.byteLength, offset + length);
      if (end <= at) continue;
      out.set(bytes.subarray(at - start, end - start), at - offset);
      at = end;
      if (at === offset + length) return out;
    }
    return undefined;
  }

  clear(): void {
    this.#ranges.length = 0;
  }
}
