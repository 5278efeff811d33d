/**
 * Loads the running runtime's raw libc binding: Bun through `bun:ffi` (`bun/libc.ts`), Deno through
 * `Deno.dlopen` (`deno/libc.ts`), Node 26+ through `node:ffi` (`node/libc.ts`). The raw calls return −1 and set
 * errno; `src/io/libc.ts` turns that into errors.
 */
import { ffiUnavailable, runtime } from "./runtime.ts";
import type { LibCBinding, LibCUnavailable } from "./types.ts";

let loading: Promise<LibCBinding | LibCUnavailable> | undefined;

/**
 * The raw libc binding for the running runtime, loaded once. Where there is none (Node before 26, Deno
 * without `--allow-ffi`, not Linux) it says why instead.
 *
 * @example
 * ```ts
 * const raw = await loadLibcBinding();
 * if (!("unavailable" in raw)) console.log(raw.sysconf(30)); // the page size
 * ```
 */
export function loadLibcBinding(): Promise<LibCBinding | LibCUnavailable> {
  loading ??= bind();
  return loading;
}

async function bind(): Promise<LibCBinding | LibCUnavailable> {
  if (process.platform !== "linux") return { unavailable: `no libc binding for ${process.platform} (Linux only)` };
  const unavailable = ffiUnavailable();
  if (unavailable) return { unavailable };
  try {
    const mod: { bindLibc(): LibCBinding } =
      runtime === "bun" ? await import("./bun/libc.ts") : runtime === "deno" ? await import("./deno/libc.ts") : await import("./node/libc.ts");
    return mod.bindLibc();
  } catch (e) {
    return { unavailable: `cannot load libc: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}` };
  }
}
