/**
 * What a `torch.save` pickle may contain, and how its tensors map onto file bytes. The allowlist follows
 * PyTorch's weights-only unpickler: tensor rebuild functions, storage and dtype names, OrderedDict,
 * torch.Size, torch.device and the few builtins protocol 2 needs for bytes and sets. Every other global,
 * call, BUILD target or persistent id is refused with `UnsafePickle`, before anything could run.
 */
import { SafetensorsError } from "../errors.ts";
import type { TensorEntry } from "../format/layout.ts";
import { dtypeInfo, type DType } from "../format/dtypes.ts";
import { ITEM_BYTES, PyDict, PySet, PyTuple, type PickleBudget, type PickleHooks } from "./unpickler.ts";

/** A storage type named in a persistent id (`torch.FloatStorage`, `torch.UntypedStorage`, …). */
export class StorageType {
  readonly name: string;
  readonly dtype: DType | undefined;
  constructor(name: string, dtype: DType | undefined) {
    this.name = name;
    this.dtype = dtype;
  }
}

/** A `torch.<dtype>` object; `dtype` is undefined where safetensors has no equivalent (complex128, …). */
export class TorchDtype {
  readonly name: string;
  readonly dtype: DType | undefined;
  constructor(name: string, dtype: DType | undefined) {
    this.name = name;
    this.dtype = dtype;
  }
}

/** Any other allowlisted global: a function or class, identified by its qualified name. */
export class TorchGlobal {
  readonly qualname: string;
  constructor(qualname: string) {
    this.qualname = qualname;
  }
}

/** A storage as the pickle refers to it: raw bytes stored under `key` (zip `data/<key>`, or a legacy record). */
export interface StorageRef {
  readonly key: string;
  /** Element type of the storage (U8 for untyped storages). */
  readonly dtype: DType;
  /** Length in elements of `dtype`, as the persistent id declares it. */
  readonly numel: number;
  /** Legacy views: where this storage starts inside the root storage, in bytes. */
  readonly byteOffset: number;
}

/** A tensor as the pickle describes it: a strided view into a storage. Offsets and strides are in elements. */
export class TorchTensor {
  #extent: Extent | undefined;
  readonly storage: StorageRef;
  readonly dtype: DType;
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];

  constructor(storage: StorageRef, dtype: DType, offset: number, shape: readonly number[], stride: readonly number[]) {
    this.storage = storage;
    this.dtype = dtype;
    this.offset = offset;
    this.shape = shape;
    this.stride = stride;
  }

  /** What the view covers, worked out once: one memoized tensor can stand under many names. */
  get extent(): Extent {
    return (this.#extent ??= extentOf(this));
  }
}

/** A tensor view's size and reach, in bytes. */
export interface Extent {
  /** The shape, copied once and shared by every layout entry of this tensor (they copy it before handing it out). */
  readonly shape: number[];
  readonly byteLength: number;
  /** Bytes from the view's first element to one past its last. */
  readonly span: number;
  /** Bytes of storage the view needs, from the storage's start. */
  readonly reach: number;
  /** Row-major with no gaps: one run of bytes. */
  readonly contiguous: boolean;
}

function extentOf(t: TorchTensor): Extent {
  const size = dtypeInfo(t.dtype)!.bits / 8;
  const shape = [...t.shape];
  let numel = 1;
  for (const n of shape) numel *= n;
  let last = t.offset;
  let expected = 1;
  let contiguous = true;
  for (let i = shape.length - 1; i >= 0; i--) {
    last += (shape[i]! - 1) * t.stride[i]!;
    if (shape[i] !== 1 && t.stride[i] !== expected) contiguous = false;
    expected *= shape[i]!;
  }
  return { shape, byteLength: numel * size, span: (last - t.offset + 1) * size, reach: (last + 1) * size, contiguous };
}

const STORAGE_DTYPES: ReadonlyArray<[string, DType | undefined]> = [
  ["DoubleStorage", "F64"], ["FloatStorage", "F32"], ["HalfStorage", "F16"], ["BFloat16Storage", "BF16"],
  ["LongStorage", "I64"], ["IntStorage", "I32"], ["ShortStorage", "I16"], ["CharStorage", "I8"],
  ["ByteStorage", "U8"], ["BoolStorage", "BOOL"], ["ComplexFloatStorage", "C64"], ["ComplexDoubleStorage", undefined],
  ["UntypedStorage", "U8"],
];

const TORCH_DTYPES: ReadonlyArray<[DType | undefined, ...string[]]> = [
  ["F32", "float32", "float"], ["F64", "float64", "double"], ["F16", "float16", "half"], ["BF16", "bfloat16"],
  ["I64", "int64", "long"], ["I32", "int32", "int"], ["I16", "int16", "short"], ["I8", "int8"], ["U8", "uint8"],
  ["U16", "uint16"], ["U32", "uint32"], ["U64", "uint64"], ["BOOL", "bool"], ["C64", "complex64", "cfloat"],
  ["F8_E4M3", "float8_e4m3fn"], ["F8_E5M2", "float8_e5m2"], ["F8_E4M3FNUZ", "float8_e4m3fnuz"],
  ["F8_E5M2FNUZ", "float8_e5m2fnuz"], ["F8_E8M0", "float8_e8m0fnu"],
  [undefined, "complex128", "cdouble", "complex32", "chalf", "float4_e2m1fn_x2", "qint8", "quint8", "qint32", "quint4x2", "quint2x4"],
];

/** Every global a checkpoint may name, by `module.name`. */
const ALLOWED = new Map<string, unknown>();
for (const [name, dtype] of STORAGE_DTYPES) {
  ALLOWED.set(`torch.${name}`, new StorageType(name, dtype));
}
ALLOWED.set("torch.storage.UntypedStorage", ALLOWED.get("torch.UntypedStorage"));
for (const [dtype, ...names] of TORCH_DTYPES) {
  for (const name of names) ALLOWED.set(`torch.${name}`, new TorchDtype(`torch.${name}`, dtype));
}
for (const name of [
  "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
  "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2",
  "torch.nn.parameter.Parameter", "torch.Tensor", "collections.OrderedDict", "torch.Size", "torch.device",
  "_codecs.encode", "builtins.bytearray", "builtins.set", "builtins.frozenset",
]) {
  ALLOWED.set(name, new TorchGlobal(name));
}

function unsafe(message: string): SafetensorsError {
  return new SafetensorsError("UnsafePickle", message);
}

function invalid(message: string): SafetensorsError {
  return new SafetensorsError("InvalidPickle", message);
}

function nonNegative(v: unknown, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw invalid(`${what} is not a non-negative integer`);
  return v;
}

function ints(v: unknown, what: string): number[] {
  if (!(v instanceof PyTuple) && !Array.isArray(v)) throw invalid(`${what} is not a tuple`);
  const items = v instanceof PyTuple ? v.items : v;
  return items.map((x) => nonNegative(x, what));
}

/** A name from the pickle as it can go in a one-line message: quoted and cut short unless it is a plain dotted name. */
function printable(name: string): string {
  return /^[\w.]{1,200}$/.test(name) ? name : JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

function describe(v: unknown): string {
  if (v instanceof TorchGlobal) return v.qualname;
  if (v instanceof StorageType) return `torch.${v.name}`;
  if (v instanceof TorchDtype) return v.name;
  if (v instanceof PyDict) return "dict";
  if (v instanceof PyTuple) return "tuple";
  if (Array.isArray(v)) return "list";
  return v === null ? "None" : typeof v;
}

function rebuild(budget: PickleBudget, storage: unknown, offset: unknown, size: unknown, stride: unknown, dtype?: unknown): TorchTensor {
  if (!isStorage(storage)) throw invalid("tensor rebuilt from something that is not a storage");
  let dt: DType | undefined = storage.dtype;
  if (dtype !== undefined) {
    if (!(dtype instanceof TorchDtype)) throw invalid("tensor dtype is not a torch dtype");
    if (!dtype.dtype) throw new SafetensorsError("UnsupportedDtype", `${dtype.name} has no safetensors dtype`);
    dt = dtype.dtype;
  }
  const shape = ints(size, "tensor size");
  const strides = ints(stride, "tensor stride");
  budget.spend(ITEM_BYTES * (shape.length + strides.length));
  if (shape.length !== strides.length) throw invalid("tensor size and stride differ in length");
  return new TorchTensor(storage, dt, nonNegative(offset, "storage offset"), shape, strides);
}

function isStorage(v: unknown): v is StorageRef {
  return typeof v === "object" && v !== null && "key" in v && "numel" in v && "byteOffset" in v && "dtype" in v;
}

function asTensor(v: unknown, what: string): TorchTensor {
  if (!(v instanceof TorchTensor)) throw invalid(`${what} is not a tensor`);
  return v;
}

function encode(budget: PickleBudget, text: unknown, encoding: unknown): Uint8Array {
  if (typeof text !== "string") throw invalid("_codecs.encode of a non-string");
  if (encoding === "latin1" || encoding === "latin-1" || encoding === "iso-8859-1") {
    budget.spend(text.length);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 0xff) throw invalid("_codecs.encode: character outside latin-1");
      out[i] = c;
    }
    return out;
  }
  if (encoding === "utf-8" || encoding === "utf8") {
    budget.spend(3 * text.length); // at most three bytes per UTF-16 unit
    return new TextEncoder().encode(text);
  }
  throw unsafe(`refused _codecs.encode with encoding ${JSON.stringify(String(encoding))}`);
}

/**
 * The allowed calls: each returns the value the pickle would have built, or refuses. What one builds in
 * proportion to its arguments (bytes, items) it charges to the budget first: the arguments can be one
 * memoized value passed again and again.
 */
const CALLS = new Map<string, (args: readonly unknown[], budget: PickleBudget) => unknown>([
  ["torch._utils._rebuild_tensor", (a, b) => rebuild(b, a[0], a[1], a[2], a[3])],
  ["torch._utils._rebuild_tensor_v2", (a, b) => rebuild(b, a[0], a[1], a[2], a[3])],
  ["torch._utils._rebuild_tensor_v3", (a, b) => rebuild(b, a[0], a[1], a[2], a[3], a[6])],
  ["torch._utils._rebuild_parameter", (a) => asTensor(a[0], "parameter data")],
  ["torch._utils._rebuild_parameter_with_state", (a) => asTensor(a[0], "parameter data")],
  ["torch.nn.parameter.Parameter", (a) => asTensor(a[0], "parameter data")],
  ["collections.OrderedDict", (a, b) => {
    const d = new PyDict();
    if (a.length === 0) return d;
    if (a.length !== 1 || !Array.isArray(a[0])) throw invalid("OrderedDict called with unexpected arguments");
    // Charged per pair read, not per entry kept: a million copies of one pair make a dict of one.
    b.spend(2 * ITEM_BYTES * a[0].length);
    for (const pair of a[0]) {
      if (!(pair instanceof PyTuple) || pair.items.length !== 2) throw invalid("OrderedDict item is not a pair");
      d.set(pair.items[0], pair.items[1], b);
    }
    return d;
  }],
  ["torch.Size", (a, b) => {
    const dims = ints(a[0] ?? [], "torch.Size");
    b.spend(ITEM_BYTES * dims.length);
    return new PyTuple(dims);
  }],
  ["torch.device", (a, b) => {
    const name = a.map(String).join(":");
    b.spend(name.length);
    return name;
  }],
  ["_codecs.encode", (a, b) => encode(b, a[0], a[1])],
  ["builtins.bytearray", (a, b) => {
    if (a.length === 0) return new Uint8Array(0);
    if (!(a[0] instanceof Uint8Array)) return encode(b, a[0], a[1]);
    b.spend(a[0].length);
    return a[0].slice();
  }],
  ["builtins.set", (a, b) => pySet(a, b)],
  ["builtins.frozenset", (a, b) => pySet(a, b)],
]);

/** `set(iterable)` / `frozenset(iterable)`: a copy of the items, charged per item copied. */
function pySet(args: readonly unknown[], budget: PickleBudget): PySet {
  if (!args.length) return new PySet([]);
  const from = items(args[0]);
  budget.spend(ITEM_BYTES * from.length);
  return new PySet([...from]);
}

/** Nested `_rebuild_from_type_v2` calls: torch.save writes one, and Python's own recursion limit stops a deep chain. */
const MAX_REBUILD_NESTING = 16;

function items(v: unknown): readonly unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof PyTuple || v instanceof PySet) return v.items;
  throw invalid("expected a list or tuple");
}

/**
 * The hooks that make the unpickler read `torch.save` output and nothing else. `storages` collects every
 * storage the pickle refers to, by key (the same key is the same storage: tied weights share it).
 *
 * @example
 * ```ts
 * const storages = new Map<string, StorageRef>();
 * const { value } = unpickle(dataPkl, torchHooks(storages));
 * ```
 */
export function torchHooks(storages: Map<string, StorageRef>): PickleHooks {
  return {
    global(module, name) {
      const qualname = `${module === "__builtin__" ? "builtins" : module}.${name}`;
      const value = ALLOWED.get(qualname);
      if (value === undefined) throw unsafe(`refused global ${printable(`${module}.${name}`)}`);
      return value;
    },
    call(callable, args, budget) {
      // _rebuild_from_type_v2(func, new_type, args, state) calls func(*args): the type only marks Tensor vs
      // Parameter, and func must itself be allowed. A loop, so a chain of them cannot overflow the JS stack.
      for (let depth = 0; callable instanceof TorchGlobal && callable.qualname === "torch._tensor._rebuild_from_type_v2"; depth++) {
        if (depth === MAX_REBUILD_NESTING) throw invalid(`tensor rebuild calls nest more than ${MAX_REBUILD_NESTING} deep`);
        const [func, type, inner] = args;
        if (!(type instanceof TorchGlobal) || (type.qualname !== "torch.Tensor" && type.qualname !== "torch.nn.parameter.Parameter")) {
          throw unsafe(`refused tensor subclass ${describe(type)}`);
        }
        callable = func;
        args = items(inner);
      }
      const fn = callable instanceof TorchGlobal ? CALLS.get(callable.qualname) : undefined;
      if (!fn) throw unsafe(`refused call of ${describe(callable)}`);
      return fn(args, budget);
    },
    build(obj, state) {
      // OrderedDict carries `_metadata` (module versions) and tensors may carry Python attributes: both ignored.
      if (obj instanceof PyDict || obj instanceof TorchTensor) return obj;
      throw unsafe(`refused BUILD of ${describe(obj)} with ${describe(state)}`);
    },
    persistentLoad(pid) {
      const p = pid instanceof PyTuple ? pid.items : [];
      if (p[0] !== "storage" || p.length < 5 || p.length > 6) throw unsafe("refused persistent id that is not a storage");
      const [, type, key, location, numel, view] = p;
      if (!(type instanceof StorageType)) throw unsafe(`refused storage type ${describe(type)}`);
      if (typeof key !== "string" || typeof location !== "string") throw invalid("storage key or location is not a string");
      if (!type.dtype) throw new SafetensorsError("UnsupportedDtype", `torch.${type.name} has no safetensors dtype`);
      let root = storages.get(key);
      if (!root) {
        root = { key, dtype: type.dtype, numel: nonNegative(numel, "storage size"), byteOffset: 0 };
        storages.set(key, root);
      }
      if (view === undefined || view === null) return root;
      // Legacy (pre-1.6) storage views: (view key, offset, size) in elements of the root storage.
      const v = view instanceof PyTuple ? view.items : [];
      if (v.length !== 3 || typeof v[0] !== "string") throw invalid("bad legacy storage view");
      const bits = dtypeInfo(root.dtype)!.bits;
      return { key, dtype: root.dtype, numel: nonNegative(v[2], "view size"), byteOffset: (nonNegative(v[1], "view offset") * bits) / 8 };
    },
  };
}

/**
 * How many times its storage bytes a gathered view may expand to (stride 0 repeats them: `expand()`), with a
 * floor for small storages. A 1-byte storage can describe a 4 GiB broadcast; copying that out is refused.
 */
export const MAX_EXPANSION = 16;
export const EXPANSION_FLOOR = 1 << 26;

/**
 * The layout entry for a tensor whose storage's bytes start at absolute offset `base` and span `storageBytes`.
 * Row-major contiguous tensors get `start` (zero-copy); any other strides get `gather`, which reads the span
 * the view covers once and copies its elements out in row-major order. `dataOffsets` is the absolute byte
 * range: the tensor's own for contiguous tensors, the span the view reaches across for gathered ones.
 * Describing a view costs nothing; `gather` refuses (`TensorTooLarge`) to copy out more than
 * {@link MAX_EXPANSION} times the bytes it reads, or {@link EXPANSION_FLOOR} if that is more.
 *
 * @example
 * ```ts
 * const entry = tensorEntry(tensor, zipEntry.offset, zipEntry.size, "fc.weight");
 * const bytes = entry.gather ? entry.gather(source) : source.bytes(entry.start, entry.byteLength);
 * ```
 */
export function tensorEntry(t: TorchTensor, base: number, storageBytes: number, name: string): TensorEntry {
  const size = dtypeInfo(t.dtype)!.bits / 8;
  const { shape, byteLength, span, reach, contiguous } = t.extent;
  if (!Number.isSafeInteger(byteLength)) throw new SafetensorsError("TensorTooLarge", `tensor ${name} is too large`);
  const start = base + t.offset * size;
  if (byteLength === 0) return { dtype: t.dtype, shape, dataOffsets: [start, start], byteLength: 0, start };
  if (reach > storageBytes) throw invalid(`tensor ${name} reads past the end of its storage`);
  if (contiguous) return { dtype: t.dtype, shape, dataOffsets: [start, start + byteLength], byteLength, start };
  return {
    dtype: t.dtype,
    shape,
    dataOffsets: [start, start + span],
    byteLength,
    start,
    gather: (source) => {
      if (byteLength > Math.max(EXPANSION_FLOOR, MAX_EXPANSION * span)) {
        throw new SafetensorsError("TensorTooLarge", `tensor ${name} is a view that expands ${span} bytes of storage to ${byteLength} bytes; copying out more than ${MAX_EXPANSION}× its storage (or ${EXPANSION_FLOOR} bytes) is refused`);
      }
      return gather(source.bytes(start, span), shape, t.stride, size, byteLength, name);
    },
  };
}

/** Copies a strided view out of `src` (which starts at the view's first element) into row-major order. */
function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], size: number, byteLength: number, name: string): Uint8Array {
  let out: Uint8Array;
  try {
    out = new Uint8Array(byteLength);
  } catch {
    throw new SafetensorsError("TensorTooLarge", `cannot allocate ${byteLength} bytes for tensor ${name}`);
  }
  // The innermost dimensions that are already contiguous are copied as one run.
  let run = 1;
  let outer = shape.length;
  while (outer > 0 && (shape[outer - 1] === 1 || stride[outer - 1] === run)) run *= shape[--outer]!;
  const runBytes = run * size;
  const index = new Array<number>(outer).fill(0);
  let from = 0;
  for (let to = 0; to < byteLength; to += runBytes) {
    const at = from * size;
    if (runBytes <= 16) for (let b = 0; b < runBytes; b++) out[to + b] = src[at + b]!;
    else out.set(src.subarray(at, at + runBytes), to);
    for (let k = outer - 1; k >= 0; k--) {
      from += stride[k]!;
      if (++index[k]! < shape[k]!) break;
      from -= stride[k]! * shape[k]!;
      index[k] = 0;
    }
  }
  return out;
}
