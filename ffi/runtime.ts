/** Which JavaScript runtime is running us. The core asks only this; `ffi/` does the runtime-specific work. */
export type RuntimeName = "bun" | "deno" | "node";

export const runtime: RuntimeName =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
    ? "bun"
    : typeof (globalThis as { Deno?: unknown }).Deno !== "undefined"
      ? "deno"
      : "node";

/**
 * An environment variable, or undefined where reading it is not allowed: under Deno without `--allow-env` for it,
 * asking first (`querySync` never prompts), so that a library reading an optional setting causes no prompt.
 *
 * @example
 * ```ts
 * const debug = readEnv("TENSORMAP_DEBUG");
 * ```
 */
export function readEnv(name: string): string | undefined {
  const deno = (globalThis as { Deno?: { permissions?: { querySync?(d: { name: "env"; variable: string }): { state: string } } } }).Deno;
  if (deno?.permissions?.querySync && deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
  return process.env[name];
}
