import { statSync } from "node:fs";
import { fromSystemError, SafetensorsError } from "../errors.ts";

/**
 * A byte source: the one thing the format layer needs from storage. The read backend copies with
 * positional reads; the mmap backend hands out views into a mapping. Nothing above this layer knows which.
 */
export type Backend = "read" | "mmap";

export interface ByteSource {
  readonly backend: Backend;
  readonly path: string;
  /** File size in bytes (files over 4 GiB are fine: offsets stay exact below 2^53). */
  readonly size: number;
  /** true when `bytes()` returns views of the storage (mmap), false when it copies (read, remote). */
  readonly zeroCopy: boolean;
  /**
   * Bytes `[offset, offset + length)`: a zero-copy view where the backend maps the file, a fresh copy
   * otherwise. Callers must not write into it.
   */
  bytes(offset: number, length: number): Uint8Array;
  /** Copies `dst.byteLength` bytes starting at `offset` into `dst`. */
  readInto(dst: Uint8Array, offset: number): void;
  /**
   * Reads `[offset, offset + length)` into `into`: a Uint8Array (at least `length` long), or, where FFI exists,
   * a raw host address (bigint) such as a pinned CUDA buffer. Resolves when every byte is there; a large read is
   * split across up to `threads` parallel reads (the opener's option, default min(8, cores)); a short read
   * retries; a file that ended early rejects with `IoError`; nothing writes into `into` after the promise
   * settles (also on rejection). A raw address where there is no FFI rejects with `FfiUnavailable`.
   */
  read(offset: number, length: number, into: Uint8Array | bigint): Promise<void>;
  /**
   * Brings a range in ahead of use. A local file (mmap) reads its pages ahead in the background and never
   * rejects (a page it missed is read on first touch); a remote file fetches the bytes into memory, which
   * `bytes()` needs, and rejects with the fetch's error (`RemoteError`, `FileChanged`, `Closed`).
   */
  prefetch?(offset: number, length: number): Promise<void>;
  /** Settles once a background populate asked for at open is over (mmap). */
  readonly populated?: Promise<void>;
  /** A range in pieces of at most `chunk` bytes, where one view could not hold it (mmap windows). */
  chunks?(offset: number, length: number, chunk?: number): Generator<Uint8Array>;
  /** Releases the file (and any mapping). Idempotent. */
  close(): void;
}

/**
 * Refuses anything but a regular file before it is opened: opening a FIFO would block for ever, and a
 * device or a folder has no size to check a header against.
 *
 * @example
 * ```ts
 * requireRegularFile("/dev/zero"); // throws SafetensorsError NotAFile
 * ```
 */
export function requireRegularFile(path: string): void {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    throw fromSystemError(e, `cannot open ${path}`);
  }
  if (!isFile) throw new SafetensorsError("NotAFile", `${path} is not a regular file`);
}

/**
 * Refuses a range that is not whole, non-negative integers inside a file of `size` bytes (`IoError`).
 *
 * @example
 * ```ts
 * checkRange("m.safetensors", 100, 96, 8); // throws: read of 8 bytes at 96 is past the end of m.safetensors
 * ```
 */
export function checkRange(path: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new SafetensorsError("IoError", `read of ${length} bytes at ${offset} is past the end of ${path}`);
  }
}

/**
 * The error for any use of a source after `close()`.
 *
 * @example
 * ```ts
 * if (!open) throw closedError(path); // SafetensorsError Closed: "m.safetensors is closed"
 * ```
 */
export function closedError(path: string): SafetensorsError {
  return new SafetensorsError("Closed", `${path} is closed`);
}
