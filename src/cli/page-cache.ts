/**
 * Whether a checkpoint's pages were in memory before a load: a warm load measures memory, a cold one the disk,
 * and the throughput line says which. Found with `mincore(2)` on a fresh mapping of each file (one byte per
 * page, nothing read or faulted in), through the libc binding's `syscall`; where that cannot answer (no FFI,
 * a remote file, a file the kernel will not report on) the state is said to be unknown rather than guessed.
 */
import { accessSync, constants, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { loadLibcBinding } from "../../ffi/libc.ts";
import { MAP_SHARED, PROT_READ } from "../../ffi/types.ts";
import { resolveCheckpoint } from "../checkpoint/open.ts";
import { loadLibc } from "../io/libc.ts";
import { isRemoteUrl } from "../io/remote/url.ts";

/** `mincore`'s number, per architecture (it has no libc wrapper in the bindings). */
const SYS_MINCORE: Partial<Record<string, number>> = { x64: 27, arm64: 232 };

/** Pages in memory out of all the checkpoint's pages, or why that is not known. */
export type PageCacheState = { resident: number; pages: number } | { unknown: string };

/**
 * The page-cache state of every file of the checkpoint at `path` (a file, a sharded folder or an index), taken
 * before it is opened (the open starts populating). Never throws: a path that cannot be probed is unknown, and
 * the load that follows reports its own errors.
 *
 * @example
 * ```ts
 * const state = await pageCacheState("checkpoints/gpt2");
 * console.log(describePageCache(state)); // "warm: pages were in memory"
 * ```
 */
export async function pageCacheState(path: string): Promise<PageCacheState> {
  if (isRemoteUrl(path)) return { unknown: "a remote checkpoint" };
  const nr = SYS_MINCORE[process.arch];
  if (nr === undefined) return { unknown: `mincore is not known on ${process.arch}` };
  const [raw, libc] = await Promise.all([loadLibcBinding(), loadLibc()]);
  if ("unavailable" in raw || "unavailable" in libc) return { unknown: "no FFI on this runtime" };
  try {
    let resident = 0;
    let pages = 0;
    for (const file of checkpointFiles(path)) {
      // For another user's file it cannot write, the kernel reports only this process's own mapped pages.
      if (!reported(file)) return { unknown: `${file} is not ours to ask about` };
      const fd = libc.openRead(file);
      try {
        const size = libc.fileSize(fd);
        if (size === 0) continue;
        const addr = libc.mmap(0n, size, PROT_READ, MAP_SHARED, fd, 0);
        try {
          const vec = new Uint8Array(Math.ceil(size / libc.pageSize));
          if (raw.syscall(nr, addr, size, raw.address(vec)) !== 0) return { unknown: `mincore failed (errno ${raw.errno()})` };
          for (const v of vec) resident += v & 1;
          pages += vec.length;
        } finally {
          libc.munmap(addr, size);
        }
      } finally {
        libc.close(fd);
      }
    }
    return { resident, pages };
  } catch (e) {
    return { unknown: e instanceof Error ? e.message : String(e) };
  }
}

/** The files a local checkpoint path stands for: itself, or the shards its index names. */
function checkpointFiles(path: string): string[] {
  const where = resolveCheckpoint(path);
  return where.kind === "file" ? [where.path] : where.index.shards.map((shard) => join(dirname(where.path), shard));
}

/** Whether mincore reports the page cache for this file: ours, or one we may write (Linux 5.0+ rule). */
function reported(file: string): boolean {
  if (process.getuid?.() === 0 || statSync(file).uid === process.getuid?.()) return true;
  try {
    accessSync(file, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * What a throughput measured, in words: `warm: pages were in memory`, `cold: pages were read from disk`,
 * `partly warm: 40% of pages were in memory`, or `page cache state unknown`.
 *
 * @example
 * ```ts
 * describePageCache({ resident: 2, pages: 5 }); // "partly warm: 40% of pages were in memory"
 * ```
 */
export function describePageCache(state: PageCacheState): string {
  if ("unknown" in state) return "page cache state unknown";
  if (state.resident === state.pages) return "warm: pages were in memory";
  if (state.resident === 0) return "cold: pages were read from disk";
  // Rounded down (99.9% is not 100%), and never to 0%: some were.
  const percent = Math.floor((100 * state.resident) / state.pages);
  return `partly warm: ${percent === 0 ? "<1" : percent}% of pages were in memory`;
}

/**
 * `"warm"`, `"cold"`, `"partly warm"` or `"unknown"`, with the fraction resident, for `--json`.
 *
 * @example
 * ```ts
 * pageCacheJson({ resident: 5, pages: 5 }); // { state: "warm", resident_fraction: 1 }
 * ```
 */
export function pageCacheJson(state: PageCacheState): { state: string; resident_fraction: number | null; reason?: string } {
  if ("unknown" in state) return { state: "unknown", resident_fraction: null, reason: state.unknown };
  const fraction = state.pages === 0 ? 1 : state.resident / state.pages;
  return { state: fraction === 1 ? "warm" : fraction === 0 ? "cold" : "partly warm", resident_fraction: fraction };
}
