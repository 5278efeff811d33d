/**
 * Whether an open file is still the one that was opened. `cp new.safetensors model.safetensors` rewrites the
 * file in place: same inode, and when the size stays the same nothing else about the open file looks different,
 * so its mapping (or the next positional read) silently shows new bytes. Its identity says so: device, inode,
 * size, modification time, and the change time, which no writer can set back (`cp -p` puts the modification
 * time back). The change time moves with the link count too, when the file is renamed over or removed: that
 * is no change of its bytes (what is open is the old file, whole), so it counts only with the link count
 * unchanged, which also makes a `chmod` or `touch` while open a change.
 *
 * Checking costs a system call (≈0.5 µs), too much for every tensor of a 20,000-tensor load (≈5 µs of work
 * each in all). So a check runs at the first access in each synchronous run of JavaScript (the flag that says
 * "checked" is cleared by a microtask), then again within that run only once a millisecond has passed (the
 * clock is read every {@link ACCESSES_PER_CLOCK} accesses). What can go unseen:
 * - a change in the millisecond since the last check, within one synchronous run, until the next check;
 * - bytes read through a view (mmap) after its access: a view is the page cache, and changes with it;
 * - a write that changes neither size nor times: one in the same clock tick (≈1–4 ms) as the previous change,
 *   on kernels before 6.13 (coarse timestamps; from 6.13 a stat forces the next change to a finer time), or a
 *   write through another process's shared mapping after its first write to that page;
 * - changes made on another machine to a network file system, until this kernel learns of them.
 */
import { fstatSync } from "node:fs";
import { STATX_BYTES } from "../../ffi/types.ts";
import { SafetensorsError } from "../errors.ts";
import type { LibC } from "./libc.ts";

/**
 * Fills `out` with what identifies the open file now, {@link WORDS} words: first the words that change only
 * with its bytes (device, inode, size, modification time), then the change time (3 words), then the link count.
 */
export type IdentityReader = (out: Uint32Array) => void;

/** Accesses between two reads of the clock within one synchronous run. */
export const ACCESSES_PER_CLOCK = 256;
/** How long a check holds within one synchronous run. */
const FRESH_MS = 1;
export const WORDS = 13;
const CTIME = 9;
const NLINK = 12;

// `struct statx` words: dev major and minor, ino and size (u64 each), mtime (i64 seconds, u32 nanoseconds), ctime
// (the same), nlink.
const STATX_WORDS = [34, 35, 8, 9, 10, 11, 28, 29, 30, 24, 25, 26, 4];

/**
 * Reads identity through libc's `statx` into a buffer made once (no allocation per check).
 *
 * @example
 * ```ts
 * const check = new IdentityCheck(path, statxIdentity(libc, fd));
 * ```
 */
export function statxIdentity(libc: LibC, fd: () => number): IdentityReader {
  const raw = new Uint8Array(STATX_BYTES);
  const words = new Uint32Array(raw.buffer);
  return (out) => {
    libc.fstatx(fd(), raw);
    for (let i = 0; i < WORDS; i++) out[i] = words[STATX_WORDS[i]!]!;
  };
}

/**
 * Reads identity through `node:fs` (where there is no FFI).
 *
 * @example
 * ```ts
 * const check = new IdentityCheck(path, fsIdentity(() => fd));
 * ```
 */
export function fsIdentity(fd: () => number): IdentityReader {
  return (out) => {
    const s = fstatSync(fd(), { bigint: true });
    const [sec, ns] = [s.mtimeNs / 1_000_000_000n, s.mtimeNs % 1_000_000_000n];
    const [csec, cns] = [s.ctimeNs / 1_000_000_000n, s.ctimeNs % 1_000_000_000n];
    const words = [s.dev, s.dev >> 32n, s.ino, s.ino >> 32n, s.size, s.size >> 32n, sec, sec >> 32n, ns, csec, csec >> 32n, cns, s.nlink];
    words.forEach((w, i) => (out[i] = Number(BigInt.asUintN(32, w))));
  };
}

/**
 * Compares an open file's identity now with the one it had at open, cheaply enough to ask at each access.
 *
 * @example
 * ```ts
 * const identity = new IdentityCheck("model.safetensors", fsIdentity(() => fd));
 * identity.check(); // before handing out a view; throws FileChanged once the file was rewritten
 * ```
 */
export class IdentityCheck {
  readonly #path: string;
  readonly #read: IdentityReader;
  readonly #opened = new Uint32Array(WORDS);
  readonly #now = new Uint32Array(WORDS);
  /** Checked in this synchronous run (cleared by a microtask). */
  #fresh = false;
  #accesses = 0;
  #until = 0;
  #changed = false;
  readonly #stale = () => {
    this.#fresh = false;
  };

  constructor(path: string, read: IdentityReader) {
    this.#path = path;
    this.#read = read;
    read(this.#opened);
  }

  /** At an access: checks unless a check in this synchronous run is under a millisecond old. */
  check(): void {
    if (this.#fresh) {
      if (++this.#accesses < ACCESSES_PER_CLOCK) return;
      this.#accesses = 0;
      if (performance.now() < this.#until) return;
    }
    this.verify();
  }

  /** Checks now: throws `FileChanged` when the file is not the one opened (and at every call after). */
  verify(): void {
    if (!this.#changed) this.#compare();
    if (this.#changed) {
      throw new SafetensorsError("FileChanged", `${this.#path} changed on disk while open (its size, times or inode are not those it was opened with); open it again`);
    }
    if (!this.#fresh) {
      this.#fresh = true;
      queueMicrotask(this.#stale);
    }
    this.#accesses = 0;
    this.#until = performance.now() + FRESH_MS;
  }

  #compare(): void {
    const [now, opened] = [this.#now, this.#opened];
    this.#read(now);
    for (let i = 0; i < CTIME; i++) if (now[i] !== opened[i]) this.#changed = true;
    const ctime = now[CTIME] !== opened[CTIME] || now[CTIME + 1] !== opened[CTIME + 1] || now[CTIME + 2] !== opened[CTIME + 2];
    if (now[NLINK] !== opened[NLINK]) {
      // Renamed over, removed or linked: the change time moved with the link count, the bytes did not.
      opened.set(now.subarray(CTIME), CTIME);
    } else if (ctime) this.#changed = true;
  }
}
