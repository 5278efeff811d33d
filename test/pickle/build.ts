/**
 * Test-only writers for the inputs the pickle reader takes: pickle opcodes, stored zip archives (ZIP64 on
 * request, or lying about their entries), tar headers and torch-style checkpoints, plus an in-memory
 * ByteSource and a way to read an outcome. They let tests reach cases no fixture has (every dtype, hostile
 * structure) without Python.
 */
import { SafetensorsError } from "../../src/errors.ts";
import type { ByteSource } from "../../src/io/source.ts";
import { concat } from "../support/bytes.ts";

const enc = new TextEncoder();

/** A pickle assembled opcode by opcode. */
export class Pickle {
  private readonly out: number[] = [];

  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  proto(n = 2): this {
    return this.raw(0x80, n);
  }
  str(s: string): this {
    const b = enc.encode(s);
    this.raw(0x58, ...u32(b.length));
    for (const x of b) this.out.push(x); // a loop: spreading a long string's bytes overflows the call stack
    return this;
  }
  binbytes(b: Uint8Array): this {
    this.raw(0x42, ...u32(b.length));
    for (const x of b) this.out.push(x);
    return this;
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.raw(0x4a, ...u32(n >>> 0));
    const bytes: number[] = [];
    let v = BigInt(n);
    for (let i = 0; i < 8; i++, v >>= 8n) bytes.push(Number(v & 0xffn));
    return this.raw(0x8a, 8, ...bytes);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...enc.encode(`${module}\n${name}\n`));
  }
  mark(): this {
    return this.raw(0x28);
  }
  tuple(): this {
    return this.raw(0x74);
  }
  ints(values: number[]): this {
    this.mark();
    for (const v of values) this.int(v);
    return this.tuple();
  }
  reduce(): this {
    return this.raw(0x52);
  }
  none(): this {
    return this.raw(0x4e);
  }
  false(): this {
    return this.raw(0x89);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function u64(n: number): number[] {
  return [...u32(n % 2 ** 32), ...u32(Math.floor(n / 2 ** 32))];
}

/** One file of a synthetic zip; the optional fields make the archive lie about it. */
export interface ZipFile {
  name: string;
  data: Uint8Array;
  /** The name its local header gives (default `name`). */
  localName?: string;
  /** The size the central directory declares (default the data's length). */
  size?: number;
  /** Writes no local header or data of its own: the central entry points at file number `sameAs`'s. */
  sameAs?: number;
}

/** A stored (uncompressed) zip. `zip64` writes every size and offset through the ZIP64 records. */
export function storedZip(files: Array<[string, Uint8Array] | ZipFile>, opts: { zip64?: boolean; method?: number } = {}): Uint8Array {
  const out: number[] = [];
  const central: number[] = [];
  const big = opts.zip64 ?? false;
  const locals: number[] = [];
  for (const file of files) {
    const { name, data, localName = name, size = data.length, sameAs } = Array.isArray(file) ? { name: file[0], data: file[1] } : file;
    const n = enc.encode(name);
    const local = sameAs === undefined ? out.length : locals[sameAs]!;
    locals.push(local);
    if (sameAs === undefined) {
      const ln = enc.encode(localName);
      out.push(...u32(0x04034b50), ...u16(45), ...u16(0), ...u16(opts.method ?? 0), ...u32(0), ...u32(0));
      out.push(...u32(data.length), ...u32(data.length), ...u16(ln.length), ...u16(0), ...ln);
      for (const b of data) out.push(b);
    }
    const extra = big ? [...u16(1), ...u16(24), ...u64(size), ...u64(size), ...u64(local)] : [];
    const field = big ? 0xffffffff : size;
    central.push(...u32(0x02014b50), ...u16(45), ...u16(45), ...u16(0), ...u16(opts.method ?? 0), ...u32(0), ...u32(0));
    central.push(...u32(field), ...u32(field), ...u16(n.length), ...u16(extra.length), ...u16(0), ...u16(0), ...u16(0), ...u32(0));
    central.push(...u32(big ? 0xffffffff : local), ...n, ...extra);
  }
  const cdOffset = out.length;
  for (const b of central) out.push(b);
  if (big) {
    const record = out.length;
    out.push(...u32(0x06064b50), ...u64(44), ...u16(45), ...u16(45), ...u32(0), ...u32(0));
    out.push(...u64(files.length), ...u64(files.length), ...u64(central.length), ...u64(cdOffset));
    out.push(...u32(0x07064b50), ...u32(0), ...u64(record), ...u32(1));
  }
  const count = big ? 0xffff : files.length;
  out.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(count), ...u16(count));
  out.push(...u32(big ? 0xffffffff : central.length), ...u32(big ? 0xffffffff : cdOffset), ...u16(0));
  return Uint8Array.from(out);
}

/** One tensor of a synthetic checkpoint: a view into storage `key`. */
export interface TensorSpec {
  name: string;
  /** Storage class (`FloatStorage`) for `_rebuild_tensor_v2`, or a dtype (`uint16`) for v3 over an UntypedStorage. */
  storage?: string;
  dtype?: string;
  key: string;
  /** Storage length in elements (bytes for untyped storages). */
  numel: number;
  shape: number[];
  stride?: number[];
  offset?: number;
  /** Legacy format only: a storage view `(view key, offset, size)` in elements of the root storage. */
  view?: [string, number, number];
}

function rowMajor(shape: number[]): number[] {
  const stride: number[] = [];
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i]!;
  }
  return stride;
}

/**
 * The pickle torch.save writes for a flat dict of tensors (protocol 2, `_rebuild_tensor_v2`/`v3`); `legacy`
 * gives persistent ids the sixth item (the view) the pre-zip format has.
 */
export function statePickle(tensors: TensorSpec[], legacy = false): Uint8Array {
  const p = new Pickle().proto().emptyDict().mark();
  for (const t of tensors) {
    p.str(t.name).global("torch._utils", t.dtype ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global(t.dtype ? "torch.storage" : "torch", t.dtype ? "UntypedStorage" : t.storage!);
    p.str(t.key).str("cpu").int(t.numel);
    if (legacy) {
      if (t.view) p.str(t.view[0]).int(t.view[1]).int(t.view[2]).raw(0x87);
      else p.none();
    }
    p.tuple().raw(0x51);
    p.int(t.offset ?? 0).ints(t.shape).ints(t.stride ?? rowMajor(t.shape)).false();
    p.global("collections", "OrderedDict").emptyTuple().reduce();
    if (t.dtype) p.global("torch", t.dtype);
    p.tuple().reduce();
  }
  return p.setitems().stop().bytes();
}

/** A torch.save-style zip: `<root>/data.pkl`, `<root>/byteorder`, `<root>/data/<key>`. */
export function torchZip(pickle: Uint8Array, storages: Record<string, Uint8Array>, root = "archive"): Uint8Array {
  return storedZip([
    [`${root}/data.pkl`, pickle],
    [`${root}/byteorder`, enc.encode("little")],
    ...Object.entries(storages).map(([k, v]): [string, Uint8Array] => [`${root}/data/${k}`, v]),
    [`${root}/version`, enc.encode("3\n")],
  ]);
}

/**
 * A pre-zip torch.save stream: magic number, protocol 1001, sys info, the pickle, the storage keys, then each
 * storage as a little-endian u64 element count and its bytes.
 */
export function legacyFile(pickle: Uint8Array, storages: Array<[key: string, count: number, bytes: Uint8Array]>): Uint8Array {
  const magic = new Pickle().proto().raw(0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19).stop();
  const protocol = new Pickle().proto().int(1001).stop();
  const sysInfo = new Pickle().proto().emptyDict().str("little_endian").raw(0x88, 0x73).stop();
  const keys = new Pickle().proto().raw(0x5d).mark();
  for (const [key] of storages) keys.str(key);
  keys.raw(0x65).stop();
  const parts = [magic.bytes(), protocol.bytes(), sysInfo.bytes(), pickle, keys.bytes()];
  for (const [, count, bytes] of storages) parts.push(Uint8Array.from(u64(count)), bytes);
  return concat(...parts);
}

/** A ByteSource over bytes in memory (read-backend semantics: `bytes` returns a copy). */
export function memorySource(data: Uint8Array, path = "memory.pt"): ByteSource {
  return {
    backend: "read",
    path,
    size: data.length,
    bytes: (offset, length) => {
      if (offset < 0 || offset + length > data.length) throw new RangeError("out of bounds");
      return data.slice(offset, offset + length);
    },
    readInto: (dst, offset) => dst.set(data.subarray(offset, offset + dst.length)),
    zeroCopy: false,
    read: async (offset, length, into) => {
      if (typeof into === "bigint") throw new RangeError("no raw addresses in memory");
      into.set(data.subarray(offset, offset + length));
    },
    close: () => {},
  };
}

/**
 * A pickle that calls the global `module.name` `times` times with one memoized argument tuple (pushed by
 * `args`), each result thrown away (POP) or, with `keep`, appended to a list: what a budget must stop.
 */
export function repeatedCall(module: string, name: string, args: (p: Pickle) => void, times: number, keep = false): Uint8Array {
  const p = new Pickle().proto().global(module, name).raw(0x71, 0, 0x30);
  args(p);
  p.raw(0x71, 1, 0x30, 0x5d);
  for (let i = 0; i < times; i++) p.raw(0x68, 0, 0x68, 1, 0x52, keep ? 0x61 : 0x30);
  return p.stop().bytes();
}

/** A stored zip (no ZIP64) with every offset in it moved by `by` bytes: to place it `by` bytes into a file. */
export function shiftZip(zip: Uint8Array, by: number): Uint8Array {
  const out = zip.slice();
  const view = new DataView(out.buffer);
  const eocd = out.length - 22;
  const start = view.getUint32(eocd + 16, true);
  const end = start + view.getUint32(eocd + 12, true);
  for (let at = start; at < end; at += 46 + view.getUint16(at + 28, true) + view.getUint16(at + 30, true) + view.getUint16(at + 32, true)) {
    view.setUint32(at + 42, view.getUint32(at + 42, true) + by, true);
  }
  view.setUint32(eocd + 16, start + by, true);
  return out;
}

/** A 512-byte tar header as Python's tarfile checks it: `name` (raw bytes, at most 100), `size` in octal, the checksum. */
export function tarHeader(name: Uint8Array, size: number): Uint8Array {
  const h = new Uint8Array(512);
  h.set(name);
  const field = (at: number, width: number, n: number) => h.set(enc.encode(`${n.toString(8).padStart(width - 1, "0")}\0`), at);
  field(100, 8, 0o644);
  field(108, 8, 0);
  field(116, 8, 0);
  field(124, 12, size);
  field(136, 12, 0);
  h[156] = 0x30; // a regular file
  h.set(enc.encode("ustar\x0000"), 257);
  h.fill(0x20, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(enc.encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  return h;
}

/** What `fn` ends in: "ok", or a SafetensorsError as `code: message`; anything else is thrown on (and fails the test). */
export function outcome(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SafetensorsError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return "ok";
}
