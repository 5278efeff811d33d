/** `--filter GLOB`: which tensor (and value) names a command keeps. */
import { UsageError } from "./command.ts";

/**
 * A glob as a whole-name regular expression: `*` any run of characters (dots included, as in Python's
 * fnmatch: `optimizer.*` is the whole optimizer), `?` any one character, everything else itself.
 *
 * @example
 * ```ts
 * globRegExp("h.*.attn.*").test("h.0.attn.c_attn.weight"); // true
 * ```
 */
export function globRegExp(glob: string): RegExp {
  const body = Array.from(glob, (c) => (c === "*" ? "[^]*" : c === "?" ? "[^]" : c.replace(/[\\^$.|+()[\]{}/]/g, "\\$&"))).join("");
  return new RegExp(`^${body}$`, "u");
}

/**
 * The names `--filter` keeps: those matching any GLOB (every name when all are `!GLOB`), less those matching
 * any `!GLOB`. Undefined when there are no patterns: keep everything.
 *
 * @example
 * ```ts
 * const keep = nameFilter(["model.*", "!*.bias"])!;
 * keep("model.fc.weight"); // true; keep("model.fc.bias") and keep("optimizer.state.0.exp_avg"): false
 * ```
 */
export function nameFilter(globs: readonly string[]): ((name: string) => boolean) | undefined {
  if (globs.length === 0) return undefined;
  const include = globs.filter((g) => !g.startsWith("!")).map(globRegExp);
  const exclude = globs.filter((g) => g.startsWith("!")).map((g) => globRegExp(g.slice(1)));
  return (name) => (include.length === 0 || include.some((r) => r.test(name))) && !exclude.some((r) => r.test(name));
}

/**
 * The `--filter` values as parsed (absent, or one per use), checked: an empty GLOB is a usage error.
 *
 * @example
 * ```ts
 * const keep = nameFilter(filterArgs(values.filter));
 * ```
 */
export function filterArgs(value: unknown): string[] {
  const globs = value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String);
  if (globs.some((g) => g === "" || g === "!")) throw new UsageError("--filter wants a non-empty GLOB");
  return globs;
}
