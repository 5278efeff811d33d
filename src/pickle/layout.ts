/**
 * PyTorch checkpoints as a layout `SafetensorsFile` can serve: recognise one by its first bytes, run its
 * pickle through the safe unpickler, and map each tensor onto the bytes of its storage in the file.
 * Two containers: the zip archive of torch ≥ 1.6 (`<root>/data.pkl`, `<root>/data/<key>`) and the legacy
 * stream (magic number, protocol, sys info, pickle, storage keys, then each storage as u64 count + bytes).
 */
import { SafetensorsError } from "../errors.ts";
import { dtypeInfo } from "../format/dtypes.ts";
import type { FileLayout, TensorEntry } from "../format/layout.ts";
import type { ByteSource } from "../io/source.ts";
import { flatten, type FlattenLimits } from "./flatten.ts";
import { tensorEntry, torchHooks, type StorageRef } from "./torch.ts";
import { MAX_PICKLE_BYTES, PickleBudget, PickleTruncated, PyDict, unpickle } from "./unpickler.ts";
import { readZip } from "./zip.ts";

export { describeLeaf } from "./flatten.ts";

/** What `SafetensorsFile` is built from (tensor names in pickle order, no metadata), plus the container kind. */
export interface PickleLayout extends FileLayout {
  metadata: null;
  /** Non-tensor values by dotted name (epoch, hyperparameters, …); render with `describeLeaf`. */
  leaves: Map<string, unknown>;
  container: "zip" | "legacy";
}

/** The legacy format's first pickle: this number, then the protocol version 1001. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL = 1001;
/** The safetensors header limit: a file whose first u64 is larger cannot be safetensors. */
const SAFETENSORS_MAX_HEADER = 100_000_000n;
const FIRST_LEGACY_READ = 1 << 16;

/**
 * Whether a file starting with `prefix` (at least 8 bytes) is a PyTorch checkpoint: a zip archive or a
 * pickle stream. torch.load reads any file that starts with a zip local header as a zip archive, so one is
 * read as a zip here too, even the one kind (`PK\3\4` then four zero bytes) whose first u64 would also be a
 * valid safetensors header length: a file that is both means two things to two readers, and the reading to
 * vet is the one that can run code under torch.load. A pickle stream qualifies only where its first u64 is
 * over the safetensors header limit, so those two never compete for a file.
 *
 * @example
 * ```ts
 * import { isPytorch, openSource } from "tensormap";
 * const src = await openSource("pytorch_model.bin");
 * console.log(isPytorch(src.bytes(0, Math.min(8, src.size)))); // true: a zip archive (model.safetensors: false)
 * src.close();
 * ```
 */
export function isPytorch(prefix: Uint8Array): boolean {
  if (prefix.length < 8) return false;
  if (isZip(prefix)) return true;
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  return n > SAFETENSORS_MAX_HEADER && prefix[0] === 0x80 && prefix[1]! >= 2 && prefix[1]! <= 5;
}

/** torch's own test (`_is_zipfile`): the first four bytes are a zip local header signature. */
function isZip(prefix: Uint8Array): boolean {
  return prefix[0] === 0x50 && prefix[1] === 0x4b && prefix[2] === 0x03 && prefix[3] === 0x04;
}

/**
 * Reads a PyTorch checkpoint's structure without executing anything: tensors as layout entries
 * (zero-copy ranges where contiguous, `gather` for strided views), other values as leaves.
 * Throws `SafetensorsError` with `UnsafePickle` for anything outside the allowlist, `InvalidPickle` or
 * `InvalidZip` for malformed files.
 *
 * @example
 * ```ts
 * import { openPytorchLayout, openSource } from "tensormap";
 * const src = await openSource("pytorch_model.bin");
 * const layout = openPytorchLayout(src);
 * console.log(layout.order, layout.entries.get("0.weight")); // ["0.weight", …], { dtype: "F32", shape: [3, 4], start: 1024, … }
 * src.close();
 * ```
 */
export function openPytorchLayout(source: ByteSource): PickleLayout {
  const prefix = source.bytes(0, Math.min(8, source.size));
  if (!isPytorch(prefix)) throw new SafetensorsError("InvalidPickle", `${source.path} is not a PyTorch checkpoint`);
  return isZip(prefix) ? openZip(source) : openLegacy(source);
}

/**
 * What a checkpoint may flatten to: a real one spends pickle bytes on every name, so this many names and
 * name characters per pickle byte (plus slack for small files) are never reached, while shared references
 * cannot blow either up.
 */
function flattenLimits(pickleBytes: number): FlattenLimits {
  return { names: (1 << 16) + 4 * pickleBytes, chars: (1 << 24) + 64 * pickleBytes };
}

function layout(value: unknown, pickleBytes: number, locate: (s: StorageRef) => { base: number; bytes: number }, container: PickleLayout["container"]): PickleLayout {
  const { tensors, leaves } = flatten(value, flattenLimits(pickleBytes));
  const entries = new Map<string, TensorEntry>();
  for (const [name, t] of tensors) {
    const { base, bytes } = locate(t.storage);
    entries.set(name, tensorEntry(t, base, bytes, name));
  }
  return { entries, order: [...entries.keys()], metadata: null, leaves, container };
}

/** A storage's bytes within its record, where the record at `base` holds `available` bytes. */
function within(s: StorageRef, base: number, available: number): { base: number; bytes: number } {
  const declared = (s.numel * dtypeInfo(s.dtype)!.bits) / 8;
  if (s.byteOffset + declared > available) {
    throw new SafetensorsError("InvalidPickle", `storage ${s.key} is declared larger than the ${available} bytes stored`);
  }
  return { base: base + s.byteOffset, bytes: declared };
}

function openZip(source: ByteSource): PickleLayout {
  const files = readZip(source);
  // torch's reader takes the first entry's folder for the archive's root, and torch.load refuses an entry
  // outside it: with one root, no other reader can pick another folder's data.pkl.
  const first = files.entries[0]?.name ?? "";
  const root = first.slice(0, first.indexOf("/") + 1);
  if (!root) throw new SafetensorsError("InvalidZip", `${source.path}: ${first ? `zip entry ${first} is not in a folder` : "zip is empty"}: not a torch.save archive`);
  const stray = files.entries.find((e) => !e.name.startsWith(root));
  if (stray) throw new SafetensorsError("InvalidZip", `${source.path} has ${stray.name} outside its root folder ${root}: a torch.save archive has one`);
  if (files.get(`${root}constants.pkl`)) {
    throw new SafetensorsError("UnsafePickle", `refused ${source.path}: a TorchScript archive (it has ${root}constants.pkl), which torch.load runs as TorchScript`);
  }
  const pkl = files.get(`${root}data.pkl`);
  if (!pkl) throw new SafetensorsError("InvalidZip", `${source.path} has no ${root}data.pkl: not a torch.save archive`);
  if (pkl.size > MAX_PICKLE_BYTES) throw new SafetensorsError("PickleTooLarge", `${source.path}: ${pkl.name} is ${pkl.size} bytes, more than the ${MAX_PICKLE_BYTES} a pickle may be`);
  const order = files.get(`${root}byteorder`);
  if (order && new TextDecoder().decode(source.bytes(order.offset, order.size)) !== "little") {
    throw new SafetensorsError("InvalidPickle", `${source.path} stores big-endian tensors, which are not supported`);
  }
  const storages = new Map<string, StorageRef>();
  const { value } = unpickle(source.bytes(pkl.offset, pkl.size), torchHooks(storages));
  return layout(value, pkl.size, (s) => {
    const record = files.get(`${root}data/${s.key}`);
    if (!record) throw new SafetensorsError("InvalidPickle", `${source.path} has no record for storage ${s.key}`);
    return within(s, record.offset, record.size);
  }, "zip");
}

function openLegacy(source: ByteSource): PickleLayout {
  // The pickles' total length is unknown until they are parsed: read a prefix, and more if it ran out, at
  // least as far as the pickle said it needs. The unpickler refuses to need more than its size limit, so a
  // sparse file cannot make this read the gigabytes it claims.
  let head = source.bytes(0, Math.min(source.size, FIRST_LEGACY_READ));
  if (isTarHeader(head.subarray(0, TAR_BLOCK))) {
    throw new SafetensorsError("UnsafePickle", `refused ${source.path}: it is also a tar archive, which torch.load reads instead of its pickles`);
  }
  for (;;) {
    try {
      return parseLegacy(source, head);
    } catch (e) {
      if (!(e instanceof PickleTruncated) || e.needed > source.size) throw e;
      head = source.bytes(0, Math.min(source.size, MAX_PICKLE_BYTES, Math.max(e.needed, head.length * 4)));
    }
  }
}

const TAR_BLOCK = 512;

/**
 * Whether a file's first 512 bytes pass for a tar header with Python's tarfile, whose test is the checksum
 * at bytes 148–155: an octal number (as `int(text, 8)` reads it, or base-256) equal to the sum of the other
 * header bytes plus eight spaces, bytes taken unsigned or signed. torch.load tries its legacy tar format
 * before the pickle stream, so such a file would be read as something other than what is vetted here.
 */
function isTarHeader(block: Uint8Array): boolean {
  if (block.length < TAR_BLOCK || block.every((b) => b === 0)) return false;
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < TAR_BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    unsigned += block[i]!;
    signed += (block[i]! << 24) >> 24;
  }
  const field = tarNumber(block.subarray(148, 156));
  return field === unsigned || field === signed;
}

/** tarfile's `nti`: base-256 when the first byte is 0o200 or 0o377, else ASCII octal up to the first NUL. */
function tarNumber(field: Uint8Array): number | undefined {
  if (field[0] === 0o200 || field[0] === 0o377) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return field[0] === 0o377 ? n - 256 ** (field.length - 1) : n;
  }
  const nul = field.indexOf(0);
  const bytes = nul < 0 ? field : field.subarray(0, nul);
  if (bytes.some((b) => b > 0x7f)) return undefined;
  // str.strip() whitespace, then Python's int(text, 8): a sign, an optional 0o prefix, digits with single underscores.
  const text = String.fromCharCode(...bytes).replace(/^[\t-\r \x1c-\x1f]+|[\t-\r \x1c-\x1f]+$/g, "");
  if (text === "") return 0;
  const m = /^([+-]?)(?:0[oO]_?)?([0-7](?:_?[0-7])*)$/.exec(text);
  if (!m) return undefined;
  const n = parseInt(m[2]!.replaceAll("_", ""), 8);
  return m[1] === "-" ? -n : n;
}

function parseLegacy(source: ByteSource, head: Uint8Array): PickleLayout {
  const storages = new Map<string, StorageRef>();
  const hooks = torchHooks(storages);
  // One budget for all five pickles of the stream.
  const budget = new PickleBudget(head.length);
  let at = 0;
  const next = (): unknown => {
    const r = unpickle(head, hooks, at, budget);
    at = r.end;
    return r.value;
  };
  if (next() !== LEGACY_MAGIC) throw new SafetensorsError("InvalidPickle", `${source.path} is a pickle but not a PyTorch checkpoint`);
  if (next() !== LEGACY_PROTOCOL) throw new SafetensorsError("InvalidPickle", `${source.path}: unknown legacy protocol version`);
  const sysInfo = next();
  if (sysInfo instanceof PyDict) {
    for (const [k, v] of sysInfo.entries()) {
      if (k === "little_endian" && v !== true) throw new SafetensorsError("InvalidPickle", `${source.path} stores big-endian tensors, which are not supported`);
    }
  }
  const value = next();
  const keys = next();
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) throw new SafetensorsError("InvalidPickle", "legacy storage key list is malformed");
  // Each key is a read of its record's count; repeats (never written by torch) would let a short list cost many reads.
  if (new Set(keys).size !== keys.length) throw new SafetensorsError("InvalidPickle", `${source.path}: legacy storage key list names a storage twice`);

  // Each storage follows as a u64 element count and its bytes, in the order of the key list.
  const records = new Map<string, { base: number; bytes: number }>();
  let pos = at;
  for (const key of keys as string[]) {
    const s = storages.get(key);
    if (!s) throw new SafetensorsError("InvalidPickle", `legacy storage ${key} is not used by the pickle`);
    if (pos + 8 > source.size) throw new SafetensorsError("InvalidPickle", `${source.path} is truncated in its storages`);
    const count = new DataView(source.bytes(pos, 8).slice().buffer).getBigUint64(0, true);
    const bytes = Number(count) * (dtypeInfo(s.dtype)!.bits / 8);
    if (count > BigInt(Number.MAX_SAFE_INTEGER) || pos + 8 + bytes > source.size) {
      throw new SafetensorsError("InvalidPickle", `${source.path} is truncated in storage ${key}`);
    }
    records.set(key, { base: pos + 8, bytes });
    pos += 8 + bytes;
  }
  return layout(value, at, (s: StorageRef) => {
    const r = records.get(s.key);
    if (!r) throw new SafetensorsError("InvalidPickle", `legacy storage ${s.key} has no data`);
    return within(s, r.base, r.bytes);
  }, "legacy");
}
