import { builtinModules } from "node:module";

/** Which JavaScript runtime is running us. The core asks only this; `ffi/` does the runtime-specific work. */
export type RuntimeName = "bun" | "deno" | "node";

export const runtime: RuntimeName =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined"
    ? "bun"
    : typeof (globalThis as { Deno?: unknown }).Deno !== "undefined"
      ? "deno"
      : "node";

/** The first Node release with `node:ffi`. */
const NODE_FFI_MAJOR = 26;

/**
 * Why this runtime cannot call C for tensormap, in one line, or undefined where it can: Bun always, Deno with
 * `--allow-ffi`, Node from 26 on through `node:ffi` (unless switched off or denied). Asks without loading it.
 *
 * @example
 * ```ts
 * ffiUnavailable(); // Node 20: "Node 20.20.2 has no FFI (node:ffi came in Node 26)"; Bun: undefined
 * ```
 */
export function ffiUnavailable(): string | undefined {
  if (runtime === "bun") return undefined;
  if (runtime === "deno") return denoPermission({ name: "ffi" }) === "granted" ? undefined : "Deno runs without --allow-ffi";
  const version = process.versions.node;
  if (Number(version.split(".")[0]) < NODE_FFI_MAJOR) return `Node ${version} has no FFI (node:ffi came in Node ${NODE_FFI_MAJOR})`;
  if (!builtinModules.includes("node:ffi")) return `Node ${version} runs without node:ffi (--no-experimental-ffi)`;
  const permission = (process as { permission?: { has(scope: string): boolean } }).permission;
  if (permission && !permission.has("ffi")) return `Node ${version} runs with --permission and without --allow-ffi`;
  return undefined;
}

/**
 * Whether this runtime can call C for tensormap (see {@link ffiUnavailable}): where it can, `open()` maps files.
 *
 * @example
 * ```ts
 * const backend = hasFfi() ? "mmap" : "read";
 * ```
 */
export function hasFfi(): boolean {
  return ffiUnavailable() === undefined;
}

/** Deno's state of a permission (`querySync` never prompts), or undefined outside Deno. */
function denoPermission(descriptor: { name: "ffi" } | { name: "env"; variable: string }): string | undefined {
  const deno = (globalThis as { Deno?: { permissions?: { querySync?(d: typeof descriptor): { state: string } } } }).Deno;
  return deno?.permissions?.querySync?.(descriptor).state;
}

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
  const state = denoPermission({ name: "env", variable: name });
  return state === undefined || state === "granted" ? process.env[name] : undefined;
}
