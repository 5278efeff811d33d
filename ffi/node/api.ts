/**
 * The slice of Node's `node:ffi` (Node 26+, experimental) the bindings use, typed here because @types/node
 * predates it, and loaded without its ExperimentalWarning. Only `ffi/node/*` reaches for it.
 */
import { setFlagsFromString } from "node:v8";

/** A C signature: argument and return type names (`int32`, `uint64`, `pointer`, ...). 64-bit values are bigint. */
export interface NodeSignature {
  arguments: readonly string[];
  return: string;
}

export interface NodeFfi {
  dlopen<S extends Record<string, NodeSignature>>(
    path: string,
    definitions: S,
  ): { lib: { close(): void }; functions: { [K in keyof S]: (...args: unknown[]) => unknown } };
  /** With `copy` false, a zero-copy view of `[pointer, pointer + length)`. */
  toArrayBuffer(pointer: bigint, length: number, copy: boolean): ArrayBuffer;
  /** The NUL-terminated string at `pointer`. */
  toString(pointer: bigint): string;
  getInt32(pointer: bigint): number;
  /** The address of a buffer's (or view's) first byte. */
  getRawPointer(source: ArrayBuffer | ArrayBufferView): bigint;
}

const WARNING = "FFI is an experimental feature";
let loaded: NodeFfi | undefined;

/**
 * `node:ffi`, loaded once. Node warns as the module loads that it is experimental: tensormap's users did not
 * ask for it, so that one warning is dropped (Node has no per-module switch); every other warning passes.
 *
 * @example
 * ```ts
 * const { functions } = nodeFfi().dlopen("libc.so.6", { getpid: { arguments: [], return: "int32" } });
 * ```
 */
export function nodeFfi(): NodeFfi {
  if (loaded) return loaded;
  const emit = process.emitWarning;
  process.emitWarning = function (this: unknown, warning: string | Error, ...rest: unknown[]) {
    if (!String(warning instanceof Error ? warning.message : warning).startsWith(WARNING)) {
      (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
    }
  } as typeof process.emitWarning;
  try {
    loaded = process.getBuiltinModule("node:ffi") as NodeFfi | undefined;
  } finally {
    process.emitWarning = emit;
  }
  if (!loaded) throw new Error("node:ffi is not available in this Node");
  countViewsInGlobalLimit();
  return loaded;
}

/** The V8 flag, and the release that made it the default and dropped it. */
const EXTERNAL_IN_GLOBAL_LIMIT = "external-memory-accounted-in-global-limit";
const DEFAULT_FROM = [14, 8];

/**
 * V8 counts a zero-copy view as memory the process allocated, as if a mapping were all resident. Before V8
 * 14.8 (Node 26 has 14.6) 64 MiB of it past the last collection starts a mark-compact there and then: viewing
 * a 500 MB checkpoint cost a 2–6 ms collection inside open(), more in a larger heap, and Bun pays none. V8 14.8
 * counts external memory within its global heap limit instead, by default; this turns that on where it is
 * not yet the default (unless the command line sets the flag either way). Mappings over half the heap limit
 * (2 GB at Node's default) still cost one collection: V8 keeps that hard limit in every mode.
 */
function countViewsInGlobalLimit(): void {
  const [major = 0, minor = 0] = process.versions.v8.split(".").map(Number);
  if (major > DEFAULT_FROM[0]! || (major === DEFAULT_FROM[0] && minor >= DEFAULT_FROM[1]!)) return;
  if (`${process.execArgv.join(" ")} ${process.env.NODE_OPTIONS ?? ""}`.includes(EXTERNAL_IN_GLOBAL_LIMIT)) return;
  setFlagsFromString(`--${EXTERNAL_IN_GLOBAL_LIMIT}`);
}
