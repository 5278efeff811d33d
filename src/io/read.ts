import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { fromSystemError, SafetensorsError } from "../errors.ts";
import { Descriptor } from "./descriptor.ts";
import { fsIdentity, IdentityCheck, statxIdentity } from "./identity.ts";
import type { LibC } from "./libc.ts";
import { defaultThreads, fsReadAt, libcReadAt, readRange, type ReadTarget } from "./positional-read.ts";
import { checkRange, closedError, requireRegularFile, type ByteSource } from "./source.ts";

/** One `read(2)` moves at most this much (Linux caps a read near 2 GiB; smaller keeps each call short). */
const MAX_READ = 1 << 30;

export interface ReadOptions {
  /**
   * libc, where the runtime has FFI: `read()` then goes through `pread` on several threads (Deno's `node:fs`
   * reads one at a time) and accepts raw addresses. Without it `read()` uses `node:fs`, into Uint8Arrays only.
   */
  libc?: LibC;
  /** Parallel reads for a large `read()` (default min(8, cores)). */
  threads?: number;
}

/**
 * The portable backend: positional reads through `node:fs`, which Node, Bun and Deno all provide.
 * Works without FFI, on files of any size, and never reads more than the range asked for.
 *
 * @example
 * ```ts
 * const src = openRead("model.safetensors");
 * const prefix = src.bytes(0, 8);
 * src.close();
 * ```
 */
export function openRead(path: string, options: ReadOptions = {}): ByteSource {
  requireRegularFile(path);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw fromSystemError(e, `cannot open ${path}`);
  }
  let size: number;
  try {
    size = fstatSync(fd).size;
  } catch (e) {
    closeSync(fd);
    throw fromSystemError(e, `cannot stat ${path}`);
  }
  const file = new Descriptor(path, fd, closeSync);
  const { libc } = options;
  // Catches the file rewritten in place (`cp` over it) between reads, which would mix old bytes with new.
  const identity = new IdentityCheck(path, libc ? statxIdentity(libc, () => file.fd) : fsIdentity(() => file.fd));
  const threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
  const target: ReadTarget = {
    path,
    size,
    threads,
    readAt: libc ? libcReadAt(libc, file, threads) : fsReadAt(file),
    rawAddresses: libc !== undefined,
  };

  const readInto = (dst: Uint8Array, offset: number): void => {
    const fd = file.fd;
    checkRange(path, size, offset, dst.byteLength);
    let done = 0;
    while (done < dst.byteLength) {
      const want = Math.min(MAX_READ, dst.byteLength - done);
      let n: number;
      try {
        n = readSync(fd, dst, done, want, offset + done);
      } catch (e) {
        throw fromSystemError(e, `cannot read ${path}`);
      }
      if (n === 0) throw new SafetensorsError("IoError", `${path} shrank while being read`);
      done += n;
    }
    // After the copy: a change that came before this check cannot hide in the bytes just read.
    identity.check();
  };

  return {
    backend: "read",
    path,
    size,
    zeroCopy: false,
    bytes(offset, length) {
      checkRange(path, size, offset, length);
      const out = new Uint8Array(length);
      readInto(out, offset);
      return out;
    },
    readInto,
    read: async (offset, length, into) => {
      if (!file.open) throw closedError(path);
      await readRange(target, offset, length, into);
      if (file.open) identity.verify();
    },
    close: () => file.close(),
  };
}
