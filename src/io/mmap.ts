/**
 * The mmap backend: a {@link ByteSource} whose `bytes()` are zero-copy views of the file's pages.
 *
 * A file is mapped in windows, each one `mmap` and one ArrayBuffer no larger than the runtime allows (Bun: 4 GiB),
 * planned by `windows.ts`: a file that fits is one window, mapped at open; a larger one gets windows on a grid of
 * half a window, mapped when first touched; a range longer than one window is read through
 * {@link MmapSource.chunks}. The descriptor stays open for `read()` and for windows mapped later.
 *
 * Lifetime: each window's ArrayBuffer owns its mapping. `close()` detaches it, so every view of it becomes empty
 * (a view kept past close can neither fault nor read another file's pages) and unmaps it at once: nothing is
 * left for the collector, which Deno may not run for 65,000 cycles. Where the runtime keeps a buffer attached
 * (Bun, while an asynchronous call holds it), close maps zero pages over it instead (MAP_FIXED): its views read
 * zeros, and it is unmapped once collected. A file that shrinks while mapped would make
 * reads past its new end raise SIGBUS: each window is guarded (`ffi/sigbus-guard.ts`), those reads see zeros,
 * and the source then refuses reads with `FileChanged`; a file rewritten in place at the same size is caught by
 * its identity (`identity.ts`, which says what can go unseen), with `FileChanged` too.
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
import { IdentityCheck, statxIdentity } from "./identity.ts";
import type { LibC } from "./libc.ts";
import { defaultThreads, libcReadAt, readRange, type ReadTarget } from "./positional-read.ts";
import { checkRange, closedError, requireRegularFile, type ByteSource } from "./source.ts";
import { isWhole, pageSpan, pieces, windowFor, windowGrid, type Span, type WindowGrid } from "./windows.ts";

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

/** One mapped window: a {@link Span} of the file, its address and the ArrayBuffer over it. */
interface Window extends Span {
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
  const grid = windowGrid(size, libc.pageSize, libc.maxView, options.windowBytes);
  const source = new MappedFile(libc, path, new Descriptor(path, fd, (d) => libc.close(d)), grid, advice, options);
  try {
    // A file that fits one window is mapped now, so that the hot path never has to.
    if (size > 0 && isWhole(grid)) source.window(0, size);
    if (options.populate && size > 0) source.populateAll();
  } catch (e) {
    source.close();
    throw namingFile(e, path);
  }
  return source;
}

/** An open mapping-backed source: its windows, its descriptor and whether it is still open. */
class MappedFile implements MmapSource {
  readonly backend = "mmap";
  readonly zeroCopy = true;
  readonly path: string;
  readonly size: number;
  readonly maxView: number;
  readonly #libc: LibC;
  readonly #grid: WindowGrid;
  readonly #advice: number;
  readonly #shared: boolean;
  /** Kept open for `read()`, which preads (faulting no page in), and for windows mapped later. */
  readonly #file: Descriptor;
  readonly #reads: ReadTarget;
  readonly #faults: Uint32Array;
  /** Catches the file rewritten in place (`cp` over it): the mapping would show the new bytes. */
  readonly #identity: IdentityCheck;
  readonly #windows = new Map<string, Window>();
  /** The one window of a file that fits one: the hot path's answer, with no lookup. */
  #whole: Window | undefined;
  #open = true;
  #populated = Promise.resolve();

  constructor(libc: LibC, path: string, file: Descriptor, grid: WindowGrid, advice: number, options: MmapOptions) {
    this.#libc = libc;
    this.path = path;
    this.size = grid.size;
    this.maxView = grid.windowMax;
    this.#grid = grid;
    this.#advice = advice;
    this.#shared = options.shared === true;
    this.#file = file;
    const threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
    this.#reads = { path, size: grid.size, threads, readAt: libcReadAt(libc, file, threads), rawAddresses: true };
    this.#faults = libc.sigbus.faults;
    this.#identity = new IdentityCheck(path, statxIdentity(libc, () => file.fd));
    fdCloser.register(this, file, this);
  }

  get populated(): Promise<void> {
    return this.#populated;
  }

  bytes(offset: number, length: number): Uint8Array {
    this.#check(offset, length);
    if (length === 0) return new Uint8Array(0);
    const w = this.#whole ?? this.#fitting(offset, length);
    // The hot path (a view per tensor) first asks whether any mapping faulted, inline: one load, where a call
    // would cost 20,000 tensors a millisecond.
    if ((this.#faults[0]! | this.#faults[1]!) !== 0) this.#intact(w);
    this.#identity.check();
    return new Uint8Array(w.buffer, offset - w.start, length);
  }

  readInto(dst: Uint8Array, offset: number): void {
    this.#check(offset, dst.byteLength);
    for (const p of pieces(this.#grid, offset, dst.byteLength, this.#grid.windowMax)) {
      const w = this.window(p.offset, p.length);
      dst.set(new Uint8Array(w.buffer, p.offset - w.start, p.length), p.offset - offset);
      this.#intact(w);
    }
    this.#identity.check();
  }

  async read(offset: number, length: number, into: Uint8Array | bigint): Promise<void> {
    if (!this.#open) throw closedError(this.path);
    // pread, not a copy out of the mapping: it faults no page in, and runs on several threads (2 cores, 1 GiB
    // warm: 13.7 GB/s on 2 threads, against 6.2 GB/s copying from a mapping not yet faulted in, 12.8 once it is).
    await readRange(this.#reads, offset, length, into);
    // After the bytes are in: a change that came before this check cannot hide in them.
    if (this.#open) this.#identity.verify();
  }

  pointer(offset: number, length = 1): bigint {
    const n = Math.min(length, this.size - offset);
    this.#check(offset, n);
    const w = this.#intact(this.#fitting(offset, n));
    this.#identity.check();
    return w.addr + BigInt(offset - w.start);
  }

  prefetch(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    return this.#populate(offset, length);
  }

  *chunks(offset: number, length: number, chunk = this.#grid.windowMax): Generator<Uint8Array> {
    this.#check(offset, length);
    for (const p of pieces(this.#grid, offset, length, chunk)) {
      const w = this.#intact(this.window(p.offset, p.length));
      this.#identity.check();
      yield new Uint8Array(w.buffer, p.offset - w.start, p.length);
    }
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    for (const w of this.#windows.values()) {
      if (!this.#libc.releaseView(w.buffer)) {
        try {
          // Still attached: zero pages over the file pages, so its views read zeros until it is collected.
          zeroOver(this.#libc, w.addr, w.end - w.start);
        } catch {
          // Out of memory for the swap: the file pages stay mapped (and guarded) until the views are collected.
          continue;
        }
      }
      w.guard.release();
    }
    this.#windows.clear();
    this.#whole = undefined;
    fdCloser.unregister(this);
    this.#file.close();
  }

  /** The window holding `[offset, offset + length)` (a range {@link windowFor} places), mapped on first use. */
  window(offset: number, length: number): Window {
    const span = windowFor(this.#grid, offset, length)!;
    const key = `${span.start}+${span.end}`;
    let w = this.#windows.get(key);
    if (!w) {
      if (!this.#open) throw closedError(this.path);
      w = this.#map(span);
      this.#windows.set(key, w);
      if (isWhole(this.#grid)) this.#whole = w;
    }
    return w;
  }

  /** Maps the whole file ahead, front to back, from now on (the `populate` option). */
  populateAll(): void {
    this.#populated = this.#populate(0, this.size);
  }

  /** The window for a range that one view must hold, or TensorTooLarge when none can. */
  #fitting(offset: number, length: number): Window {
    if (!windowFor(this.#grid, offset, length)) {
      throw new SafetensorsError(
        "TensorTooLarge",
        `${length} bytes do not fit one view (at most ${this.maxView} bytes in ${this.#libc.runtime}); read them with file.chunks(name)`,
      );
    }
    return this.window(offset, length);
  }

  #map(span: Span): Window {
    const length = span.end - span.start;
    const addr = mapFile(this.#libc, length, this.#file.fd, span.start, this.#shared);
    try {
      if (this.#advice !== MADV_NORMAL) this.#libc.madvise(addr, length, this.#advice);
      const buffer = this.#libc.viewOwningMapping(addr, length);
      const guard = this.#libc.sigbus.guard(addr, length);
      guardReleaser.register(buffer, guard);
      return { ...span, addr, buffer, guard };
    } catch (e) {
      this.#libc.munmap(addr, length);
      throw e;
    }
  }

  /** A window whose file shrank under it has handed out zeros: refuse to go on. */
  #intact(w: Window): Window {
    if (w.guard.faulted()) {
      throw new SafetensorsError("FileChanged", `${this.path} shrank on disk while mapped: reads past its new end gave zeros; open it again`);
    }
    return w;
  }

  #check(offset: number, length: number): void {
    if (!this.#open) throw closedError(this.path);
    checkRange(this.path, this.size, offset, length);
  }

  /** MADV_POPULATE_READ over a range, one window after the other (so a cold file is read in order); never rejects. */
  async #populate(offset: number, length: number): Promise<void> {
    try {
      for (const p of pieces(this.#grid, offset, length, this.#grid.windowMax)) {
        if (!this.#open) return;
        // Held until the kernel is done: no collection unmaps the window under the call.
        const w = this.window(p.offset, p.length);
        const { from, length: n } = pageSpan(this.#grid.page, p);
        await populateRange(this.#libc, w.addr + BigInt(from), n);
      }
    } catch {
      // A hint: whatever was not mapped ahead faults in on first touch.
    }
  }
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
