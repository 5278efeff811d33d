/**
 * The slice of Deno's FFI API the bindings use, typed here because the project compiles without Deno's
 * own type library. Only `ffi/deno/*` reaches for it.
 */
export type DenoPointer = object | null;

export interface DenoForeignFunction {
  parameters: readonly string[];
  result: string;
  nonblocking?: boolean;
}

export interface DenoFfi {
  dlopen<S extends Record<string, DenoForeignFunction>>(
    path: string,
    symbols: S,
  ): { symbols: { [K in keyof S]: (...args: unknown[]) => unknown }; close(): void };
  UnsafePointer: {
    create(value: bigint): DenoPointer;
    of(view: ArrayBufferView): DenoPointer;
    value(p: DenoPointer): bigint | number;
  };
  UnsafePointerView: {
    new (p: NonNullable<DenoPointer>): { getInt32(offset?: number): number };
    getArrayBuffer(p: NonNullable<DenoPointer>, length: number, offset?: number): ArrayBuffer;
    getCString(p: NonNullable<DenoPointer>, offset?: number): string;
  };
}

/**
 * The `Deno` global, typed for FFI.
 *
 * @example
 * ```ts
 * const lib = deno().dlopen("libc.so.6", { getpid: { parameters: [], result: "i32" } });
 * ```
 */
export function deno(): DenoFfi {
  return (globalThis as unknown as { Deno: DenoFfi }).Deno;
}
