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
import { PickleTruncated, PyDict, unpickle } from "./unpickler.ts";
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
 * pickle stream. Only prefixes that cannot be a valid safetensors file qualify (their first u64 is over the
 * header limit), so the two formats never compete for a file.
 *
 * @example
 * ```ts
 * const src = openRead(path);
 * if (isPytorch(src.bytes(0, Math.min(8, src.size)))) layout = openPytorchLayout(src);
 * ```
 */
export function isPytorch(prefix: Uint8Array): boolean {
  if (prefix.length < 8) return false;
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n <= SAFETENSORS_MAX_HEADER) return false;
  const zip = prefix[0] === 0x50 && prefix[1] === 0x4b && prefix[2] === 0x03 && prefix[3] === 0x04;
  const pickle = prefix[0] === 0x80 && prefix[1]! >= 2 && prefix[1]! <= 5;
  return zip || pickle;
}

/**
 * Reads a PyTorch checkpoint's structure without executing anything: tensors as layout entries
 * (zero-copy ranges where contiguous, `gather` for strided views), other values as leaves.
 * Throws `SafetensorsError` with `UnsafePickle` for anything outside the allowlist, `InvalidPickle` or
 * `InvalidZip` for malformed files.
 *
 * @example
 * ```ts
 * const layout = openPytorchLayout(openRead("pytorch_model.bin"));
 * layout.entries.get("fc.weight"); // { dtype: "F32", shape: [3, 4], start: 1088, … }
 * ```
 */
export function openPytorchLayout(source: ByteSource): PickleLayout {
  const prefix = source.bytes(0, Math.min(8, source.size));
  if (!isPytorch(prefix)) throw new SafetensorsError("InvalidPickle", `${source.path} is not a PyTorch checkpoint`);
  return prefix[0] === 0x50 ? openZip(source) : openLegacy(source);
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
  const pkl = [...files.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (!pkl) throw new SafetensorsError("InvalidZip", `${source.path} has no <root>/data.pkl: not a torch.save archive`);
  const root = pkl.name.slice(0, -"data.pkl".length);
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
  // The pickles' total length is unknown until they are parsed: read a prefix, and more if it ran out.
  for (let length = Math.min(source.size, FIRST_LEGACY_READ); ; length = Math.min(source.size, length * 4)) {
    try {
      return parseLegacy(source, source.bytes(0, length));
    } catch (e) {
      if (!(e instanceof PickleTruncated) || length === source.size) throw e;
    }
  }
}

function parseLegacy(source: ByteSource, head: Uint8Array): PickleLayout {
  const storages = new Map<string, StorageRef>();
  const hooks = torchHooks(storages);
  let at = 0;
  const next = (): unknown => {
    const r = unpickle(head, hooks, at);
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
