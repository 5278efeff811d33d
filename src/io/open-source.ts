import { readEnv, runtime } from "../../ffi/runtime.ts";
import { SafetensorsError } from "../errors.ts";
import { loadLibc, type LibC } from "./libc.ts";
import { openMmap, type MmapOptions } from "./mmap.ts";
import { openRead } from "./read.ts";
import type { Backend, ByteSource } from "./source.ts";

export interface SourceOptions extends Omit<MmapOptions, "windowBytes" | "shared"> {
  /** `"auto"` (default) maps the file where FFI is available and reads it otherwise. */
  backend?: Backend | "auto";
}

/** The backend a request resolves to here, and why, in words. */
export interface BackendChoice {
  backend: Backend;
  reason: string;
  /** Present when `backend` is `"mmap"`. */
  libc?: LibC;
}

/**
 * Resolves `"auto" | "mmap" | "read"` for this runtime. Forcing `"mmap"` where there is no FFI throws
 * `FfiUnavailable` with the reason.
 *
 * @example
 * ```ts
 * import { chooseBackend } from "tensormap";
 * const { backend, reason } = await chooseBackend("auto");
 * console.error(`backend ${backend}: ${reason}`); // Bun, Deno, Node 26+: "mmap"; Node 20–25: "read", no FFI
 * ```
 */
export async function chooseBackend(requested: Backend | "auto" = "auto"): Promise<BackendChoice> {
  if (requested === "read") return { backend: "read", reason: "asked for" };
  if (requested !== "mmap" && requested !== "auto") {
    throw new SafetensorsError("InvalidArgument", `unknown backend ${JSON.stringify(requested)} (auto, mmap or read)`);
  }
  const libc = await loadLibc();
  if ("unavailable" in libc) {
    if (requested === "mmap") throw new SafetensorsError("FfiUnavailable", `no mmap backend: ${libc.unavailable}`);
    return { backend: "read", reason: `auto: ${libc.unavailable}` };
  }
  const how = runtime === "bun" ? "bun:ffi" : runtime === "deno" ? "Deno.dlopen" : "node:ffi";
  return { backend: "mmap", reason: `${requested === "auto" ? "auto" : "asked for"}: libc through ${how}`, libc };
}

/**
 * Opens a file with the backend asked for, or the best one this runtime has. With `TENSORMAP_DEBUG=1` it
 * says on stderr which backend it chose and why.
 *
 * @example
 * ```ts
 * import { openSource } from "tensormap";
 * const src = await openSource("model.safetensors", { advice: "sequential" }); // backend "mmap" insists on a mapping
 * console.log(src.backend, src.size, src.bytes(0, 8)); // the first 8 bytes: the header's length, little-endian
 * src.close();
 * ```
 */
export async function openSource(path: string, opts: SourceOptions = {}): Promise<ByteSource> {
  return (await sourceOpener(opts))(path);
}

/**
 * Settles the backend once (loading FFI where it needs to) and returns a synchronous opener using it:
 * for readers that open many files lazily, such as sharded checkpoints.
 *
 * @example
 * ```ts
 * const openSrc = await sourceOpener({ backend: "auto" });
 * const shard = openSrc("model-00001-of-00003.safetensors");
 * ```
 */
export async function sourceOpener(opts: SourceOptions = {}): Promise<(path: string) => ByteSource> {
  const choice = await chooseBackend(opts.backend ?? "auto");
  const { threads } = opts;
  if (choice.libc) {
    const { libc } = choice;
    return (path) => {
      debug(path, choice);
      return openMmap(libc, path, { advice: opts.advice, populate: opts.populate, threads });
    };
  }
  // Read by choice, where there is FFI all the same: read() then preads on several threads, into raw addresses too.
  const ffi = await loadLibc();
  const libc = "unavailable" in ffi ? undefined : ffi;
  return (path) => {
    debug(path, choice);
    return openRead(path, { libc, threads });
  };
}

/** With `TENSORMAP_DEBUG=1`, says on stderr which backend a file got and why. */
function debug(path: string, choice: BackendChoice): void {
  if (debugging()) process.stderr.write(`tensormap: ${path}: ${choice.backend} backend (${choice.reason})\n`);
}

function debugging(): boolean {
  // Deno without --allow-env for it: no debug output, and no permission prompt.
  const v = readEnv("TENSORMAP_DEBUG");
  return v !== undefined && v !== "" && v !== "0";
}
