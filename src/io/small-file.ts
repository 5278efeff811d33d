import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { fromSystemError, SafetensorsError } from "../errors.ts";

/**
 * Reads a small side file whole (`model.safetensors.index.json`, `config.json`), refusing anything else before a
 * byte is read: a FIFO (whose open would wait for a writer for ever: it is opened non-blocking, then refused),
 * a device such as `/dev/zero` behind a symbolic link (endless: refused by what the open descriptor is, not by
 * its name), a folder (`NotAFile`), and a file over `cap` bytes, or one that grows past it while being read
 * (`FileTooLarge`).
 *
 * @example
 * ```ts
 * const text = new TextDecoder().decode(readSmallFile("model.safetensors.index.json", 100_000_000));
 * ```
 */
export function readSmallFile(path: string, cap: number): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw fromSystemError(e, `cannot open ${path}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new SafetensorsError("NotAFile", `${path} is not a regular file`);
    if (stat.size > cap) throw new SafetensorsError("FileTooLarge", `${path} is ${stat.size} bytes, more than the ${cap} allowed`);
    // One byte more than it says, to see it grow; and past the cap only to refuse it.
    let out = new Uint8Array(Math.min(stat.size, cap) + 1);
    let n = 0;
    for (let got; (got = readSync(fd, out, n, out.length - n, n)) > 0; ) {
      n += got;
      if (n > cap) throw new SafetensorsError("FileTooLarge", `${path} grew past the ${cap} bytes allowed while being read`);
      if (n === out.length) {
        const grown = new Uint8Array(Math.min(2 * out.length, cap + 1));
        grown.set(out);
        out = grown;
      }
    }
    return out.subarray(0, n);
  } catch (e) {
    throw fromSystemError(e, `cannot read ${path}`);
  } finally {
    closeSync(fd);
  }
}
