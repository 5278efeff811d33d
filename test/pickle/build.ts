/**
 * Test-only writers for the inputs the pickle reader takes: pickle opcodes, stored zip archives (ZIP64 on
 * request) and torch-style checkpoints, plus an in-memory ByteSource. They let tests reach cases no fixture
 * has (every dtype, hostile structure) without Python.
 */
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

/** A stored (uncompressed) zip. `zip64` writes every size and offset through the ZIP64 records. */
export function storedZip(files: Array<[string, Uint8Array]>, opts: { zip64?: boolean; method?: number } = {}): Uint8Array {
  const out: number[] = [];
  const central: number[] = [];
  const big = opts.zip64 ?? false;
  for (const [name, data] of files) {
    const n = enc.encode(name);
    const local = out.length;
    out.push(...u32(0x04034b50), ...u16(45), ...u16(0), ...u16(opts.method ?? 0), ...u32(0), ...u32(0));
    out.push(...u32(data.length), ...u32(data.length), ...u16(n.length), ...u16(0), ...n);
    for (const b of data) out.push(b);
    const extra = big ? [...u16(1), ...u16(24), ...u64(data.length), ...u64(data.length), ...u64(local)] : [];
    const size = big ? 0xffffffff : data.length;
    central.push(...u32(0x02014b50), ...u16(45), ...u16(45), ...u16(0), ...u16(opts.method ?? 0), ...u32(0), ...u32(0));
    central.push(...u32(size), ...u32(size), ...u16(n.length), ...u16(extra.length), ...u16(0), ...u16(0), ...u16(0), ...u32(0));
    central.push(...u32(big ? 0xffffffff : local), ...n, ...extra);
  }
  const cdOffset = out.length;
  out.push(...central);
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
    close: () => {},
  };
}
