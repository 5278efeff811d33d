/**
 * `ByteSource.read`: a positional read into caller memory (a Uint8Array or a raw host address), split across
 * threads when it is large, with short reads retried. The backends differ only in how they read once.
 */
import { read as fsRead } from "node:fs";
import { availableParallelism } from "node:os";
import { fromSystemError, SafetensorsError } from "../errors.ts";
import type { Descriptor } from "./descriptor.ts";
import type { LibC } from "./libc.ts";
import { checkRange } from "./source.ts";

/**
 * One positional read: `length` bytes at file `offset` into `into`, `at` bytes past its start. Resolves to the
 * count read: short reads happen, 0 is the end of the file, −1 a failure.
 */
export type ReadAt = (into: Uint8Array | bigint, at: number, length: number, offset: number) => Promise<number>;

/** Each thread gets at least this much of a read: smaller parts cost more in hand-offs than they save. */
export const MIN_PART = 1 << 20;

/**
 * How many parallel reads a source splits a large read into unless told: one per core, at most 8.
 *
 * @example
 * ```ts
 * defaultThreads(); // 2 on a 2-core machine
 * ```
 */
export function defaultThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

/**
 * Splits one read of `length` bytes into at most `parts` reads of at least `minPart` bytes (the last may be
 * shorter; none for an empty read), so reader threads share it. `at` is the offset inside the destination.
 *
 * @example
 * ```ts
 * splitRead(1000, 8 << 20, 4, 1 << 20); // 4 reads of 2 MiB: { offset: 1000, length: 2097152, at: 0 }, …
 * ```
 */
export function splitRead(offset: number, length: number, parts: number, minPart = MIN_PART): { offset: number; length: number; at: number }[] {
  const n = Math.max(1, Math.min(Math.floor(parts), Math.floor(length / Math.max(1, minPart))));
  // Page-multiple parts keep each thread's reads aligned to whole pages of the destination.
  const step = Math.ceil(length / n / 4096) * 4096 || length;
  const out: { offset: number; length: number; at: number }[] = [];
  for (let at = 0; at < length; at += step) out.push({ offset: offset + at, length: Math.min(step, length - at), at });
  return out;
}

/** What a backend's read needs to know about its file. */
export interface ReadTarget {
  path: string;
  size: number;
  /** Parallel reads for a large read. */
  threads: number;
  readAt: ReadAt;
  /** Whether `readAt` can write through a raw address (FFI). */
  rawAddresses: boolean;
}

/**
 * Checks a `read(offset, length, into)` and reads every byte, in parallel parts. Every part has stopped
 * writing into `into` before the promise settles, also when one failed.
 *
 * @example
 * ```ts
 * await readRange({ path, size, threads: 4, readAt, rawAddresses: true }, 0, 1 << 26, pinnedAddress);
 * ```
 */
export async function readRange(target: ReadTarget, offset: number, length: number, into: Uint8Array | bigint): Promise<void> {
  const { path } = target;
  checkRange(path, target.size, offset, length);
  if (typeof into === "bigint") {
    if (!target.rawAddresses) throw new SafetensorsError("FfiUnavailable", `${path}: reading into a raw address needs FFI (Bun or Deno with --allow-ffi)`);
  } else if (!(into instanceof Uint8Array) || into.byteLength < length) {
    throw new SafetensorsError("InvalidArgument", `${path}: read of ${length} bytes into a buffer of ${into?.byteLength ?? "no"} bytes`);
  }
  const parts = splitRead(offset, length, target.threads).map(async (part) => {
    for (let done = 0; done < part.length; ) {
      const n = await target.readAt(into, part.at + done, part.length - done, part.offset + done);
      if (n <= 0) {
        const why = n === 0 ? "the file ended early (truncated while reading?)" : "pread failed";
        throw new SafetensorsError("IoError", `${path}: cannot read ${part.length - done} bytes at offset ${part.offset + done}: ${why}`);
      }
      done += n;
    }
  });
  const failed = (await Promise.allSettled(parts)).find((r) => r.status === "rejected");
  if (failed) throw fromSystemError(failed.reason, `${path}: cannot read ${length} bytes at offset ${offset}`);
}

/**
 * Reads through libc's `pread`, up to `threads` at once off the JS thread (Bun: Workers; Deno: its FFI pool),
 * into a Uint8Array's memory or a raw address alike.
 *
 * @example
 * ```ts
 * const readAt = libcReadAt(libc, descriptor, 4);
 * await readAt(pinnedAddress, 0, 4096, 0); // 4096
 * ```
 */
export function libcReadAt(libc: LibC, file: Descriptor, threads: number): ReadAt {
  return (into, at, length, offset) => {
    const base = typeof into === "bigint" ? into : libc.address(into);
    // `into` stays referenced by this closure until the read is over: its memory cannot be collected under it.
    return file.during((fd) => libc.pread(fd, base + BigInt(at), length, offset, threads)).finally(() => void into);
  };
}

/**
 * Reads through `node:fs` (the libuv thread pool on Node), into Uint8Arrays only: Node has no FFI for raw
 * addresses, and `readRange` refuses those before this runs.
 *
 * @example
 * ```ts
 * await fsReadAt(descriptor)(buffer, 0, 4096, 0); // 4096
 * ```
 */
export function fsReadAt(file: Descriptor): ReadAt {
  return (into, at, length, offset) =>
    file.during(
      (fd) =>
        new Promise<number>((resolve, reject) => {
          if (typeof into === "bigint") return reject(new SafetensorsError("FfiUnavailable", `${file.path}: no FFI to read into a raw address`));
          fsRead(fd, into, at, length, offset, (err, n) => (err ? reject(fromSystemError(err, `cannot read ${file.path}`)) : resolve(n)));
        }),
    );
}
