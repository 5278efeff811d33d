/**
 * Just enough of the zip format to read a `torch.save` archive in place: the central directory (ZIP64
 * included), and for each entry the absolute offset of its data, taken from its local header. Only stored
 * (uncompressed, unencrypted) entries are accepted, which is what torch writes, so every entry's bytes are
 * a contiguous range of the file and can be viewed without copying.
 */
import { SafetensorsError } from "../errors.ts";
import type { ByteSource } from "../io/source.ts";

/** One stored entry: its data is `size` bytes at absolute `offset` in the file. */
export interface ZipEntry {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
/** The end record is followed by a comment of at most 65,535 bytes. */
const MAX_TAIL = EOCD_SIZE + 0xffff;
/** A checkpoint has one entry per storage; this is far above any real one and keeps a hostile count cheap. */
const MAX_ENTRIES = 1 << 20;
const MAX_CENTRAL_SIZE = 1 << 28;

const utf8 = new TextDecoder("utf-8", { fatal: true });

function bad(message: string): SafetensorsError {
  return new SafetensorsError("InvalidZip", message);
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("zip field is larger than 2^53");
  return Number(v);
}

/** Where the central directory is and how many entries it lists (ZIP64 fields where the classic ones overflow). */
function findDirectory(source: ByteSource): { offset: number; size: number; count: number } {
  const tailLength = Math.min(source.size, MAX_TAIL);
  const tailStart = source.size - tailLength;
  const tail = source.bytes(tailStart, tailLength);
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tailLength - EOCD_SIZE; i >= 0; i--) {
    if (view.getUint32(i, true) === EOCD_SIG && i + EOCD_SIZE + view.getUint16(i + 20, true) === tailLength) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad(`${source.path}: no zip end-of-central-directory record`);
  let count = view.getUint16(eocd + 10, true);
  let size = view.getUint32(eocd + 12, true);
  let offset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || view.getUint32(loc, true) !== ZIP64_LOCATOR_SIG) throw bad("zip needs ZIP64 but has no ZIP64 locator");
    const recordAt = u64(view, loc + 8);
    if (recordAt + 56 > source.size) throw bad("ZIP64 end record is past the end of the file");
    const record = source.bytes(recordAt, 56);
    const rv = new DataView(record.buffer, record.byteOffset, 56);
    if (rv.getUint32(0, true) !== ZIP64_EOCD_SIG) throw bad("bad ZIP64 end record signature");
    count = u64(rv, 32);
    size = u64(rv, 40);
    offset = u64(rv, 48);
  }
  if (count > MAX_ENTRIES) throw bad(`zip lists ${count} entries, more than ${MAX_ENTRIES}`);
  if (size > MAX_CENTRAL_SIZE || offset + size > source.size) throw bad("zip central directory is out of bounds");
  return { offset, size, count };
}

/**
 * Reads the entries of a stored zip archive, keyed by name, each with the absolute offset of its data.
 * Throws `SafetensorsError("InvalidZip")` for anything malformed, compressed, encrypted or out of bounds.
 *
 * @example
 * ```ts
 * const entries = readZip(openRead("model.pt"));
 * const pkl = entries.get("archive/data.pkl");
 * ```
 */
export function readZip(source: ByteSource): Map<string, ZipEntry> {
  const dir = findDirectory(source);
  const central = source.bytes(dir.offset, dir.size);
  const view = new DataView(central.buffer, central.byteOffset, central.byteLength);
  const entries = new Map<string, ZipEntry>();
  let at = 0;
  for (let i = 0; i < dir.count; i++) {
    if (at + 46 > central.length || view.getUint32(at, true) !== CENTRAL_SIG) throw bad("bad zip central directory entry");
    const flags = view.getUint16(at + 8, true);
    const method = view.getUint16(at + 10, true);
    let csize = view.getUint32(at + 20, true);
    let usize = view.getUint32(at + 24, true);
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    const commentLength = view.getUint16(at + 32, true);
    let local = view.getUint32(at + 42, true);
    const end = at + 46 + nameLength + extraLength + commentLength;
    if (end > central.length) throw bad("zip central directory entry is truncated");
    let name: string;
    try {
      name = utf8.decode(central.subarray(at + 46, at + 46 + nameLength));
    } catch {
      throw bad("zip entry name is not valid UTF-8");
    }
    // ZIP64 extended information: the 64-bit values, in this order, for the fields that overflowed.
    for (let x = at + 46 + nameLength; x + 4 <= at + 46 + nameLength + extraLength; ) {
      const id = view.getUint16(x, true);
      const len = view.getUint16(x + 2, true);
      if (x + 4 + len > at + 46 + nameLength + extraLength) throw bad("zip extra field is truncated");
      if (id === 0x0001) {
        let f = x + 4;
        const next = (): number => {
          if (f + 8 > x + 4 + len) throw bad("ZIP64 extra field is too short");
          const v = u64(view, f);
          f += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (csize === 0xffffffff) csize = next();
        if (local === 0xffffffff) local = next();
      }
      x += 4 + len;
    }
    if (flags & 1) throw bad(`zip entry ${name} is encrypted`);
    if (method !== 0 || csize !== usize) throw bad(`zip entry ${name} is compressed; only stored entries can be read in place`);
    entries.set(name, { name, offset: dataOffset(source, local, name), size: usize });
    at = end;
  }
  for (const e of entries.values()) {
    if (e.offset + e.size > source.size) throw bad(`zip entry ${e.name} runs past the end of the file`);
  }
  return entries;
}

/** The data of an entry starts after its local header, whose name and extra lengths may differ from the central copy. */
function dataOffset(source: ByteSource, local: number, name: string): number {
  if (local + 30 > source.size) throw bad(`zip local header of ${name} is past the end of the file`);
  const head = source.bytes(local, 30);
  const view = new DataView(head.buffer, head.byteOffset, 30);
  if (view.getUint32(0, true) !== LOCAL_SIG) throw bad(`bad zip local header signature for ${name}`);
  return local + 30 + view.getUint16(26, true) + view.getUint16(28, true);
}
