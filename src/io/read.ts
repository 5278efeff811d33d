import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { fromSystemError, SafetensorsError } from "../errors.ts";
import { requireRegularFile, type ByteSource } from "./source.ts";

/** One `read(2)` moves at most this much (Linux caps a read near 2 GiB; smaller keeps each call short). */
const MAX_READ = 1 << 30;

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
export function openRead(path: string): ByteSource {
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
  let open = true;

  const readInto = (dst: Uint8Array, offset: number): void => {
    if (!open) throw new SafetensorsError("Closed", `${path} is closed`);
    if (offset < 0 || offset + dst.byteLength > size) {
      throw new SafetensorsError("IoError", `read of ${dst.byteLength} bytes at ${offset} is past the end of ${path}`);
    }
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
  };

  return {
    backend: "read",
    path,
    size,
    bytes(offset, length) {
      const out = new Uint8Array(length);
      readInto(out, offset);
      return out;
    },
    readInto,
    close() {
      if (open) {
        open = false;
        closeSync(fd);
      }
    },
  };
}
