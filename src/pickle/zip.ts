/**
 * Just enough of the zip format to read a `torch.save` archive in place: the central directory (ZIP64
 * included), and for each entry the absolute offset of its data, taken from its local header. Only stored
 * (uncompressed, unencrypted) entries are accepted, which is what torch writes, so every entry's bytes are
 * a contiguous range of the file and can be viewed without copying.
 *
 * An archive that two readers could read differently is refused: the bytes vetted here must be the bytes
 * torch's reader (miniz) loads. So the end record is the one nearest the end of the file (miniz's choice) and
 * must account for every byte after it; a ZIP64 end record wins over the classic one (miniz again) and the
 * two must agree; no two entries may share a name (miniz compares names ignoring ASCII case, and which of two
 * it finds depends on the directory's order); each local header must repeat its entry's name; and no entry,
 * the central directory or the end records may overlap.
 */
import { SafetensorsError } from "../errors.ts";
import type { ByteSource } from "../io/source.ts";

/** One stored entry: its data is `size` bytes at absolute `offset` in the file. */
export interface ZipEntry {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

/**
 * The entries of an archive, in central directory order, looked up by name the way torch's reader
 * looks them up (ASCII letters in either case). Two entries that are one name to that lookup are refused:
 * which of them miniz finds depends on the directory's order.
 *
 * @example
 * ```ts
 * const archive = readZip(openRead("model.pt"));
 * archive.get("archive/DATA.PKL") === archive.get("archive/data.pkl"); // true, as for torch
 * ```
 */
export class ZipArchive {
  readonly #byName = new Map<string, ZipEntry>();
  readonly entries: readonly ZipEntry[];

  constructor(entries: readonly ZipEntry[]) {
    this.entries = entries;
    for (const e of entries) {
      const folded = foldCase(e.name);
      const earlier = this.#byName.get(folded);
      if (earlier) {
        const same = earlier.name === e.name ? `${e.name} twice` : `both ${earlier.name} and ${e.name}, one name to torch's reader`;
        throw bad(`zip lists ${same}: readers disagree on which entry it means`);
      }
      this.#byName.set(folded, e);
    }
  }

  /** The entry torch would find under `name`. */
  get(name: string): ZipEntry | undefined {
    return this.#byName.get(foldCase(name));
  }
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const LOCAL_SIZE = 30;
/** The end record is followed by a comment of at most 65,535 bytes. */
const MAX_TAIL = EOCD_SIZE + 0xffff;
/** A checkpoint has one entry per storage; this is far above any real one and keeps a hostile count cheap. */
const MAX_ENTRIES = 1 << 20;
const MAX_CENTRAL_SIZE = 1 << 28;

const utf8 = new TextDecoder("utf-8", { fatal: true });

function bad(message: string): SafetensorsError {
  return new SafetensorsError("InvalidZip", message);
}

/** miniz's MZ_TOLOWER, which its name lookups apply to every byte: ASCII letters only. */
function foldCase(name: string): string {
  return /[A-Z]/.test(name) ? name.replace(/[A-Z]+/g, (s) => s.toLowerCase()) : name;
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("zip field is larger than 2^53");
  return Number(v);
}

/** A byte range of the file that one structure of the archive occupies. */
type Span = readonly [start: number, end: number, what: string];

/** Where the central directory is, how many entries it lists, and the ranges the end records occupy. */
function findDirectory(source: ByteSource, tail: Uint8Array): { offset: number; size: number; count: number; records: Span[] } {
  const tailLength = tail.length;
  const tailStart = source.size - tailLength;
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  // miniz takes the signature nearest the end; a comment that does not reach exactly to the end would let
  // another reader take an earlier record instead.
  let eocd = tailLength - EOCD_SIZE;
  while (eocd >= 0 && view.getUint32(eocd, true) !== EOCD_SIG) eocd--;
  if (eocd < 0) throw bad(`${source.path}: no zip end-of-central-directory record`);
  if (eocd + EOCD_SIZE + view.getUint16(eocd + 20, true) !== tailLength) {
    throw bad("zip end record's comment length does not match the bytes after it: readers would disagree on which end record counts");
  }
  const eocdAt = tailStart + eocd;
  const records: Span[] = [];
  let count = view.getUint16(eocd + 10, true);
  let size = view.getUint32(eocd + 12, true);
  let offset = view.getUint32(eocd + 16, true);
  const loc = eocd - ZIP64_LOCATOR_SIZE;
  const zip64 = eocdAt >= ZIP64_LOCATOR_SIZE + ZIP64_EOCD_SIZE && loc >= 0 && view.getUint32(loc, true) === ZIP64_LOCATOR_SIG;
  if (zip64) {
    const recordAt = u64(view, loc + 8);
    if (recordAt + ZIP64_EOCD_SIZE > source.size) throw bad("ZIP64 end record is past the end of the file");
    const record = source.bytes(recordAt, ZIP64_EOCD_SIZE);
    const rv = new DataView(record.buffer, record.byteOffset, ZIP64_EOCD_SIZE);
    if (rv.getUint32(0, true) !== ZIP64_EOCD_SIG) throw bad("bad ZIP64 end record signature");
    // miniz reads the ZIP64 values whenever the record is there; the classic ones must say the same or overflow.
    const wide = { count: u64(rv, 32), size: u64(rv, 40), offset: u64(rv, 48) };
    if ((count !== 0xffff && count !== wide.count) || (size !== 0xffffffff && size !== wide.size) || (offset !== 0xffffffff && offset !== wide.offset)) {
      throw bad("zip's classic and ZIP64 end records describe different central directories");
    }
    ({ count, size, offset } = wide);
    records.push([recordAt, recordAt + ZIP64_EOCD_SIZE, "ZIP64 end record"], [eocdAt - ZIP64_LOCATOR_SIZE, eocdAt, "ZIP64 locator"]);
  } else if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    throw bad("zip needs ZIP64 but has no ZIP64 locator");
  }
  records.push([eocdAt, source.size, "end record"]);
  if (count > MAX_ENTRIES) throw bad(`zip lists ${count} entries, more than ${MAX_ENTRIES}`);
  if (size > MAX_CENTRAL_SIZE || offset + size > source.size) throw bad("zip central directory is out of bounds");
  return { offset, size, count, records };
}

/**
 * Reads the entries of a stored zip archive, each with the absolute offset of its data.
 * Throws `SafetensorsError("InvalidZip")` for anything malformed, compressed, encrypted, out of bounds or
 * ambiguous (repeated names, overlapping entries, end records that disagree).
 *
 * @example
 * ```ts
 * const archive = readZip(openRead("model.pt"));
 * const pkl = archive.get("archive/data.pkl");
 * ```
 */
export function readZip(source: ByteSource): ZipArchive {
  // The end of the file, read once: the end records are in it, and a small archive's local headers too.
  const tail = source.bytes(source.size - Math.min(source.size, MAX_TAIL), Math.min(source.size, MAX_TAIL));
  const tailStart = source.size - tail.length;
  const read = (offset: number, length: number): Uint8Array =>
    offset >= tailStart ? tail.subarray(offset - tailStart, offset - tailStart + length) : source.bytes(offset, length);
  const dir = findDirectory(source, tail);
  const central = read(dir.offset, dir.size);
  const view = new DataView(central.buffer, central.byteOffset, central.byteLength);
  const entries: ZipEntry[] = [];
  // Where each entry's local header starts and its data ends, for the overlap check.
  const starts: number[] = [];
  const ends: number[] = [];
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
    const nameBytes = central.subarray(at + 46, at + 46 + nameLength);
    let name: string;
    try {
      name = utf8.decode(nameBytes);
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
    const offset = dataOffset(source.size, read, local, nameBytes, name);
    if (offset + usize > source.size) throw bad(`zip entry ${name} runs past the end of the file`);
    entries.push({ name, offset, size: usize });
    starts.push(local);
    ends.push(offset + usize);
    at = end;
  }
  const archive = new ZipArchive(entries);
  const structures: Span[] = [[dir.offset, dir.offset + dir.size, "central directory"], ...dir.records];
  for (const [start, end] of structures) {
    starts.push(start);
    ends.push(end);
  }
  requireDisjoint(starts, ends, (i) => (i < entries.length ? `entry ${entries[i]!.name}` : structures[i - entries.length]![2]));
  return archive;
}

/**
 * The data of an entry starts after its local header, whose extra field may differ from the central copy
 * (torch pads it to align the data) but whose name must not: readers that go by the local headers would
 * otherwise see other files.
 */
function dataOffset(fileSize: number, read: (offset: number, length: number) => Uint8Array, local: number, nameBytes: Uint8Array, name: string): number {
  const length = LOCAL_SIZE + nameBytes.length;
  if (local + length > fileSize) throw bad(`zip local header of ${name} is past the end of the file`);
  const head = read(local, length);
  const view = new DataView(head.buffer, head.byteOffset, length);
  if (view.getUint32(0, true) !== LOCAL_SIG) throw bad(`bad zip local header signature for ${name}`);
  let same = view.getUint16(26, true) === nameBytes.length;
  for (let i = 0; same && i < nameBytes.length; i++) same = head[LOCAL_SIZE + i] === nameBytes[i];
  if (!same) throw bad(`zip local header of ${name} gives it another name`);
  return local + LOCAL_SIZE + nameBytes.length + view.getUint16(28, true);
}

/**
 * Every structure's bytes belong to it alone: overlapping ones let one range be read as two different things.
 * Structure i spans `starts[i]` to `ends[i]` and is called `label(i)`.
 */
function requireDisjoint(starts: number[], ends: number[], label: (i: number) => string): void {
  let sorted = true;
  for (let i = 1; sorted && i < starts.length; i++) sorted = starts[i - 1]! <= starts[i]!;
  // Entries come in file order in the archives torch writes, and the structures at the end: usually no sort.
  const order = Array.from(starts.keys());
  if (!sorted) order.sort((a, b) => starts[a]! - starts[b]!);
  for (let k = 1; k < order.length; k++) {
    const previous = order[k - 1]!;
    const next = order[k]!;
    if (starts[next]! < ends[previous]!) throw bad(`zip ${label(previous)} and ${label(next)} overlap`);
  }
}
