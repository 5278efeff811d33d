/** "Did you mean …" for a mistyped command or option. */

/**
 * Edits (insertions, deletions, substitutions, swaps of neighbours) between `a` and `b`.
 *
 * @example
 * ```ts
 * editDistance("inspcet", "inspect"); // 1: a swap
 * ```
 */
export function editDistance(a: string, b: string): number {
  // Optimal string alignment: Levenshtein plus transpositions, row by row.
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, before[j - 2]! + 1);
      row.push(d);
    }
    before = previous;
    previous = row;
  }
  return previous[b.length]!;
}

/**
 * The candidate nearest to `word`, if near enough to be a typo: at most one edit per three characters (and
 * at least one allowed), the first listed on a tie. Case is ignored.
 *
 * @example
 * ```ts
 * closest("verfy", ["inspect", "verify", "load"]); // "verify"
 * closest("frobnicate", ["inspect", "verify"]); // undefined
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const limit = Math.max(1, Math.floor(word.length / 3));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}
