/**
 * The slice of Node's `node:ffi` (Node 26+, experimental) the bindings use, typed here because @types/node
 * predates it, and loaded without its ExperimentalWarning. Only `ffi/node/*` reaches for it.
 */

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
  return loaded;
}
