/**
 * Finds and loads libcudart: the raw calls a loader needs (DESIGN §5, `CudaRuntime` in `types.ts`), with
 * pointers as `bigint` on every runtime. The per-runtime bindings live in `ffi/bun/cudart.ts`,
 * `ffi/deno/cudart.ts` and `ffi/node/cudart.ts`; {@link loadCudart} picks one by dynamic import.
 */
import { loadLibcBinding } from "./libc.ts";
import { ffiUnavailable, readEnv, runtime } from "./runtime.ts";
import type { CudartBinding, CudartLoad } from "./types.ts";

/** Library file names tried in each directory and then through the dynamic linker's search path. */
const NAMES = ["libcudart.so", "libcudart.so.13", "libcudart.so.12"];

/**
 * Where to look for libcudart, in order: `TENSORMAP_CUDART` alone when set (an explicit choice is not second-
 * guessed), else each name in `$CUDA_HOME/lib64` and `/usr/local/cuda/lib64`, then the bare names for `dlopen`'s
 * own search (`LD_LIBRARY_PATH`, ldconfig).
 *
 * @example
 * ```ts
 * cudartCandidates({ CUDA_HOME: "/opt/cuda" })[0]; // "/opt/cuda/lib64/libcudart.so"
 * ```
 */
export function cudartCandidates(env: Record<string, string | undefined>): string[] {
  const explicit = env.TENSORMAP_CUDART;
  if (explicit) return [explicit];
  const dirs = [env.CUDA_HOME ? `${env.CUDA_HOME.replace(/\/+$/, "")}/lib64` : null, "/usr/local/cuda/lib64"];
  const paths = dirs.filter((d): d is string => d !== null).flatMap((d) => NAMES.map((n) => `${d}/${n}`));
  return [...new Set([...paths, ...NAMES])];
}

const cache = new Map<string, Promise<CudartLoad>>();

/**
 * Loads libcudart through the running runtime's FFI, trying {@link cudartCandidates} in order. Never throws:
 * a missing library or a runtime without FFI (Node) is `{ ok: false, reason }`. Results are cached per
 * candidate list; loading a library says nothing about whether a GPU is usable (ask `cudaGetDeviceCount`).
 *
 * @example
 * ```ts
 * const lib = await loadCudart();
 * if (lib.ok) lib.cuda.cudaGetDeviceCount(new Int32Array(1));
 * else console.log(lib.reason); // "libcudart not found (tried …)"
 * ```
 */
export function loadCudart(opts: { env?: Record<string, string | undefined> } = {}): Promise<CudartLoad> {
  // Through readEnv: Deno without --allow-env reads them as unset rather than prompting or throwing.
  const candidates = cudartCandidates(opts.env ?? { TENSORMAP_CUDART: readEnv("TENSORMAP_CUDART"), CUDA_HOME: readEnv("CUDA_HOME") });
  const key = candidates.join("\0");
  let found = cache.get(key);
  if (!found) {
    found = tryLoad(candidates);
    cache.set(key, found);
  }
  return found;
}

async function tryLoad(candidates: string[]): Promise<CudartLoad> {
  const unavailable = ffiUnavailable();
  if (unavailable && runtime === "node") return { ok: false, reason: `no FFI on Node: ${unavailable}` };
  // A load reads files through libc too; and libc says why there is no FFI (Deno without --allow-ffi).
  const libc = await loadLibcBinding();
  if ("unavailable" in libc) return { ok: false, reason: `FFI unavailable: ${libc.unavailable}` };
  let binding: CudartBinding;
  try {
    binding =
      runtime === "bun" ? await import("./bun/cudart.ts") : runtime === "deno" ? await import("./deno/cudart.ts") : await import("./node/cudart.ts");
  } catch (e) {
    return { ok: false, reason: `FFI unavailable: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}` };
  }
  let first = "";
  for (const path of candidates) {
    try {
      return { ok: true, cuda: binding.openCudart(path) };
    } catch (e) {
      first ||= (e instanceof Error ? e.message : String(e)).split("\n")[0]!;
    }
  }
  return { ok: false, reason: `libcudart not found (tried ${candidates.join(", ")}; ${first})` };
}
