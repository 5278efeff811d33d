/**
 * The mmap backend: a {@link ByteSource} whose `bytes()` are zero-copy views of the file's pages.
 *
 * A file is mapped in windows, each one `mmap` and one ArrayBuffer no larger than the runtime allows (Bun: 4 GiB).
 * A file that fits is one window, mapped at open. A larger one gets overlapping windows on a grid of half a window,
 * mapped when first touched, so any range up to half a window lies inside one; a longer range gets a window of
 * its own, and one longer than a window is read through {@link MmapSource.chunks}.
 *
 * Lifetime: each window's ArrayBuffer owns its mapping and unmaps it when collected. `close()` maps zero pages
 * over every window (MAP_FIXED), so a view kept past close reads zeros instead of faulting, and drops the
 * windows; the collector unmaps them once the last view is gone. A file that shrinks while mapped would make
 * reads past its new end raise SIGBUS: each window is guarded (`ffi/sigbus-guard.ts`), those reads see zeros,
 * and the source then refuses reads with `FileChanged`.
 */
import {
  MADV_NORMAL,
  MADV_POPULATE_READ,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  type MappingGuard,
} from "../../ffi/types.ts";
import { namingFile, SafetensorsError } from "../errors.ts";
import { Descriptor } from "./descriptor.ts";
import type { LibC } from "./libc.ts";
import { defaultThreads, libcReadAt, readRange, type ReadTarget } from "./positional-read.ts";
import { checkRange, closedError, requireRegularFile, type ByteSource } from "./source.ts";

/** Read-ahead hint for the kernel (`madvise`), applied to every window. */
export type Advice = "sequential" | "random" | "willneed" | "none";

export interface MmapOptions {
  /** Access pattern hint; default `"none"` (the kernel's default read-ahead). */
  advice?: Advice;
  /**
   * Map every page, front to back, from open on: MADV_POPULATE_READ on a kernel thread (io_uring) while
   * JavaScript parses the header and reads the pages already mapped, so a cold file's reads overlap that work.
   * Where the kernel has no io_uring the call runs at open; before Linux 5.14 it is MADV_WILLNEED.
   */
  populate?: boolean;
  /** Largest window, in bytes (default: the runtime's largest ArrayBuffer). Smaller only to exercise windows. */
  windowBytes?: number;
  /**
   * Map the page-cache pages themselves, read-only (`MAP_SHARED`), instead of a private copy-on-write
   * mapping: what a device pinning the mapping needs (a long-term pin of a private mapping copies every
   * page). Views are then read-only: for loaders that never hand them out.
   */
  shared?: boolean;
  /** Parallel reads for a large `read()` (default min(8, cores)). */
  threads?: number;
}

export interface MmapSource extends ByteSource {
  readonly backend: "mmap";
  /** The longest range one `bytes()` view or `pointer()` may span. */
  readonly maxView: number;
  /**
   * The address of byte `offset`, valid for `length` bytes (at most {@link maxView}) until `close()`.
   * For native consumers (memcpy, cudaMemcpy, cudaHostRegister).
   */
  pointer(offset: number, length?: number): bigint;
  /**
   * Reads `[offset, offset + length)` and maps it on a kernel thread (MADV_POPULATE_READ), as `populate` does
   * for the whole file; settles when done and never rejects.
   */
  prefetch(offset: number, length: number): Promise<void>;
  /**
   * Settles once the `populate` asked for at open is over (at once when none was). It never rejects: a
   * page the kernel could not map ahead is read on first touch, as without `populate`.
   */
  readonly populated: Promise<void>;
  /** Zero-copy views covering `[offset, offset + length)` in order, each at most `chunk` bytes. */
  chunks(offset: number, length: number, chunk?: number): Generator<Uint8Array>;
}

const ADVICE: Record<Advice, number> = {
  none: MADV_NORMAL,
  sequential: MADV_SEQUENTIAL,
  random: MADV_RANDOM,
  willneed: MADV_WILLNEED,
};

interface Window {
  start: number;
  length: number;
  addr: bigint;
  buffer: ArrayBuffer;
  /** Catches reads past the end of a file that shrank while mapped (SIGBUS otherwise). */
  guard: MappingGuard;
}

/** Stops guarding a window once the collector has unmapped it. */
const guardReleaser = new FinalizationRegistry<MappingGuard>((guard) => guard.release());

/** Closes the descriptor of a source that was dropped without `close()`. */
const fdCloser = new FinalizationRegistry<Descriptor>((file) => {
  try {
    file.close();
  } catch {
    // Nothing to report to: the source is gone.
  }
});

/** Whether MADV_POPULATE_READ exists here; learnt on first use (EINVAL before Linux 5.14). */
let populateRead = true;

/**
 * Maps `path` read-only. Throws `SafetensorsError` with the errno name (`ENOENT`, `EACCES`, `ENOMEM`, …).
 *
 * @example
 * ```ts
 * const libc = await loadLibc();
 * if (!("unavailable" in libc)) {
 *   const src = openMmap(libc, "model.safetensors", { advice: "sequential" });
 *   const prefix = src.bytes(0, 8); // a view of the first page, nothing copied
 *   src.close();
 * }
 * ```
 */
export function openMmap(libc: LibC, path: string, options: MmapOptions = {}): MmapSource {
  const advice = ADVICE[options.advice ?? "none"];
  if (advice === undefined) throw new SafetensorsError("InvalidArgument", `unknown advice ${String(options.advice)}`);
  requireRegularFile(path);
  const fd = libc.openRead(path);
  let size: number;
  try {
    size = libc.fileSize(fd);
  } catch (e) {
    libc.close(fd);
    throw namingFile(e, path);
  }
  const page = libc.pageSize;
  const windowMax = Math.max(page, floorTo(Math.min(options.windowBytes ?? libc.maxView, libc.maxView), page));
  const step = Math.max(page, floorTo(windowMax / 2, page));
  const windows = new Map<string, Window>();
  const sigbus = libc.sigbus;
  // Kept open for `read()`, which preads (never faulting the mapping in), and for windows mapped later.
  const file = new Descriptor(path, fd, (d) => libc.close(d));
  const threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
  const target: ReadTarget = { path, size, threads, readAt: libcReadAt(libc, file, threads), rawAddresses: true };
  let whole: Window | undefined;
  let open = true;
  const token = {};

  const map = (start: number, length: number): Window => {
    // Private and writable: a caller writing into a view gets its own copy of that page (the file never
    // changes) instead of a SIGSEGV; pages nobody writes stay shared with the page cache. NORESERVE: a
    // writable private mapping is otherwise charged in full against overcommit, and a checkpoint larger
    // than RAM + swap fails with ENOMEM. Where the kernel still refuses (strict overcommit), map read-only.
    const addr = mapFile(libc, length, fd, start, options.shared === true);
    try {
      if (advice !== MADV_NORMAL) libc.madvise(addr, length, advice);
      const buffer = libc.viewOwningMapping(addr, length);
      const guard = sigbus.guard(addr, length);
      guardReleaser.register(buffer, guard);
      return { start, length, addr, buffer, guard };
    } catch (e) {
      libc.munmap(addr, length);
      throw e;
    }
  };

  /** The window holding `[offset, offset + length)`, mapped on first use; `length` ≤ windowMax − step. */
  const windowFor = (offset: number, length: number): Window => {
    // Nearly every file fits one window: the hot path is one lookup-free check.
    if (size <= windowMax && whole && open) return whole;
    let start: number;
    let end: number;
    if (size <= windowMax) [start, end] = [0, size];
    else if (length <= windowMax - step) {
      start = floorTo(offset, step);
      end = Math.min(start + windowMax, size);
    } else [start, end] = [floorTo(offset, page), offset + length];
    const key = `${start}+${end}`;
    let w = windows.get(key);
    if (!w) {
      if (!open) throw closedError(path);
      w = map(start, end - start);
      windows.set(key, w);
      if (size <= windowMax) whole = w;
    }
    return w;
  };

  /** A window whose file shrank under it has handed out zeros: refuse to go on. */
  const intact = (w: Window): Window => {
    if (w.guard.faulted()) {
      throw new SafetensorsError("FileChanged", `${path} shrank on disk while mapped: reads past its new end gave zeros; open it again`);
    }
    return w;
  };

  const check = (offset: number, length: number): void => {
    if (!open) throw closedError(path);
    checkRange(path, size, offset, length);
  };
  /** Whether one window can hold the range (a window of its own starts at a page boundary). */
  const fits = (offset: number, length: number): boolean =>
    size <= windowMax || offset + length - floorTo(offset, page) <= windowMax;
  const tooLarge = (length: number): SafetensorsError =>
    new SafetensorsError(
      "TensorTooLarge",
      `${length} bytes do not fit one view (at most ${windowMax} bytes in ${libc.runtime}); read them with file.chunks(name)`,
    );

  /** Splits a range into pieces that each lie in one window. */
  function* pieces(offset: number, length: number, most: number): Generator<[Window, number, number]> {
    const limit = size <= windowMax ? Math.min(most, windowMax) : Math.min(most, windowMax - step);
    for (let at = offset, end = offset + length; at < end; ) {
      const n = Math.min(limit, end - at);
      yield [windowFor(at, n), at, n];
      at += n;
    }
  }

  /** A range as page-aligned address ranges, one per window (what madvise takes), with their windows. */
  function* pageRanges(offset: number, length: number): Generator<[Window, bigint, number]> {
    for (const [w, at, n] of pieces(offset, length, windowMax)) {
      const from = floorTo(at - w.start, page);
      yield [w, w.addr + BigInt(from), at - w.start + n - from];
    }
  }

  let populated = Promise.resolve();
  /** MADV_POPULATE_READ over a range, one window after the other (so a cold file is read in order). */
  const populate = async (offset: number, length: number): Promise<void> => {
    try {
      // The suspended generator holds each window until the kernel is done: no collection unmaps it under the call.
      for (const [, addr, n] of pageRanges(offset, length)) {
        if (!open) return;
        await populateRange(libc, addr, n);
      }
    } catch {
      // A hint: whatever was not mapped ahead faults in on first touch.
    }
  };

  const source: MmapSource = {
    backend: "mmap",
    path,
    size,
    zeroCopy: true,
    maxView: windowMax,
    get populated() {
      return populated;
    },
    bytes(offset, length) {
      check(offset, length);
      if (length === 0) return new Uint8Array(0);
      if (!fits(offset, length)) throw tooLarge(length);
      const w = windowFor(offset, length);
      // The hot path (a view per tensor) first asks whether any mapping faulted, inline: one load, where a call
      // would cost 20,000 tensors a millisecond.
      if ((sigbus.faults[0]! | sigbus.faults[1]!) !== 0) intact(w);
      return new Uint8Array(w.buffer, offset - w.start, length);
    },
    readInto(dst, offset) {
      check(offset, dst.byteLength);
      for (const [w, at, n] of pieces(offset, dst.byteLength, windowMax)) {
        dst.set(new Uint8Array(w.buffer, at - w.start, n), at - offset);
        intact(w);
      }
    },
    async read(offset, length, into) {
      if (!open) throw closedError(path);
      // pread, not a copy out of the mapping: it faults no page in, and runs on several threads (2 cores, 1 GiB
      // warm: 13.7 GB/s on 2 threads, against 6.2 GB/s copying from a mapping not yet faulted in, 12.8 once it is).
      await readRange(target, offset, length, into);
    },
    pointer(offset, length = 1) {
      const n = Math.min(length, size - offset);
      check(offset, n);
      if (!fits(offset, n)) throw tooLarge(n);
      const w = intact(windowFor(offset, n));
      return w.addr + BigInt(offset - w.start);
    },
    prefetch(offset, length) {
      check(offset, length);
      return populate(offset, length);
    },
    *chunks(offset, length, chunk = windowMax) {
      check(offset, length);
      for (const [w, at, n] of pieces(offset, length, Math.max(1, chunk))) yield new Uint8Array(intact(w).buffer, at - w.start, n);
    },
    close() {
      if (!open) return;
      open = false;
      for (const w of windows.values()) {
        try {
          // Zero pages over the file pages: views kept past close read zeros; the collector unmaps later.
          zeroOver(libc, w.addr, w.length);
          w.guard.release();
        } catch {
          // Out of memory for the swap: the file pages stay mapped until the views are collected.
        }
      }
      windows.clear();
      whole = undefined;
      fdCloser.unregister(token);
      file.close();
    },
  };

  fdCloser.register(source, file, token);
  try {
    if (size > 0 && size <= windowMax) windowFor(0, size);
    if (options.populate && size > 0) populated = populate(0, size);
  } catch (e) {
    source.close();
    throw namingFile(e, path);
  }
  return source;
}

function mapFile(libc: LibC, length: number, fd: number, offset: number, shared: boolean): bigint {
  if (shared) return libc.mmap(0n, length, PROT_READ, MAP_SHARED, fd, offset);
  try {
    return libc.mmap(0n, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, offset);
  } catch (e) {
    if (!(e instanceof SafetensorsError && e.code === "ENOMEM")) throw e;
    return libc.mmap(0n, length, PROT_READ, MAP_SHARED, fd, offset);
  }
}

/** Replaces `[addr, addr + length)` with zero pages, writable like the file mapping was where memory allows. */
function zeroOver(libc: LibC, addr: bigint, length: number): void {
  const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
  try {
    libc.mmap(addr, length, PROT_READ | PROT_WRITE, flags, -1, 0);
  } catch {
    libc.mmap(addr, length, PROT_READ, flags, -1, 0);
  }
}

/** MADV_POPULATE_READ in the background; MADV_WILLNEED, here, where the kernel predates it (EINVAL). */
async function populateRange(libc: LibC, addr: bigint, length: number): Promise<void> {
  if (populateRead) {
    try {
      return await libc.madviseInBackground(addr, length, MADV_POPULATE_READ);
    } catch (e) {
      if (!(e instanceof SafetensorsError && e.code === "EINVAL")) throw e;
      populateRead = false;
    }
  }
  libc.madvise(addr, length, MADV_WILLNEED);
}

/**
 * Reads one byte in every `step` bytes of a view, so that every page is faulted in; returns their sum so the
 * reads cannot be optimized away. What `tensormap load` and the benchmarks use to touch a tensor.
 *
 * @example
 * ```ts
 * import { open, touchPages } from "tensormap";
 * using file = await open("model.safetensors");
 * touchPages(file.tensor("wte.weight").bytes); // every page of wte is in memory now
 * ```
 */
export function touchPages(bytes: Uint8Array, step = 4096): number {
  // Each read is a cache miss (and, first time, a page fault): four to a turn, in their own sums, so the CPU
  // has several misses in flight at once (a third faster than one read per turn on mapped pages, Bun and Deno).
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const n = bytes.length;
  let i = 0;
  for (const unrolled = n - 3 * step; i < unrolled; i += 4 * step) {
    a += bytes[i]!;
    b += bytes[i + step]!;
    c += bytes[i + 2 * step]!;
    d += bytes[i + 3 * step]!;
  }
  for (; i < n; i += step) a += bytes[i]!;
  if (n > 0) a += bytes[n - 1]!;
  return a + b + c + d;
}

function floorTo(n: number, unit: number): number {
  return n - (n % unit);
}
