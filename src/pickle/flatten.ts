/**
 * Turns the object a checkpoint pickles (a state dict, or a training checkpoint with model, optimizer,
 * epoch, …) into flat dotted names: `model.fc.weight`, `optimizer.state.0.exp_avg`. Tensors become entries;
 * everything else is kept as a leaf for `inspect` (lists and tuples of plain values stay one leaf).
 * Iterative and bounded: cycles and hostile sharing (one list referenced from everywhere) fail cleanly.
 */
import { SafetensorsError } from "../errors.ts";
import { PyDict, PySet, PyTuple } from "./unpickler.ts";
import { StorageType, TorchDtype, TorchGlobal, TorchTensor } from "./torch.ts";

const MAX_DEPTH = 1000;
/** Longest dotted name: real ones are tens of characters; hostile sharing could otherwise build gigabytes. */
export const MAX_NAME_LENGTH = 1 << 16;

/** Bounds on what a checkpoint may flatten to; callers derive both from the pickle's size. */
export interface FlattenLimits {
  /** Names (tensors and leaves) in the output. */
  names: number;
  /** Characters of every name built on the way (intermediate ones included): bounds memory and time. */
  chars: number;
}

export interface Flattened {
  /** Tensors by dotted name, in pickle order. */
  readonly tensors: Map<string, TorchTensor>;
  /** Everything that is not a tensor, by dotted name, as unpickled (see {@link describeLeaf}). */
  readonly leaves: Map<string, unknown>;
}

function keyName(key: unknown): string {
  return typeof key === "string" ? key : describeLeaf(key);
}

function isContainer(v: unknown): boolean {
  return v instanceof PyDict || Array.isArray(v) || v instanceof PyTuple;
}

/**
 * A container's `[key, value]` children, or undefined for a leaf. `plain` remembers which sequences hold
 * only plain values, so a long list referenced from many places is scanned once.
 */
function children(v: unknown, plain: Map<readonly unknown[], boolean>): Array<[string, unknown]> | undefined {
  if (v instanceof PyDict) return v.size ? [...v.entries()].map(([k, x]) => [keyName(k), x]) : undefined;
  const items = Array.isArray(v) ? v : v instanceof PyTuple ? v.items : undefined;
  if (!items) return undefined;
  // A list of plain values (tags, betas, param ids) reads better as one leaf than as one name per item.
  let isPlain = plain.get(items);
  if (isPlain === undefined) plain.set(items, (isPlain = !items.some((x) => isContainer(x) || x instanceof TorchTensor)));
  return isPlain ? undefined : items.map((x, i) => [String(i), x]);
}

/**
 * Flattens a checkpoint object. A tensor at the root is named `tensor`; two paths that flatten to the same
 * name are an error rather than a silent overwrite. `limits` bound the output: shared references let a
 * small pickle describe exponentially many paths, or one long key repeated down a deep path, so callers
 * derive them from the pickle's size. No name grows past {@link MAX_NAME_LENGTH} characters.
 *
 * @example
 * ```ts
 * const { tensors, leaves } = flatten(value, { names: 1 << 16, chars: 1 << 24 });
 * tensors.get("model.fc.weight"); leaves.get("epoch"); // 3
 * ```
 */
export function flatten(root: unknown, limits: FlattenLimits): Flattened {
  const tensors = new Map<string, TorchTensor>();
  const leaves = new Map<string, unknown>();
  const plain = new Map<readonly unknown[], boolean>();
  const todo: Array<[string, unknown, number]> = [["", root, 0]];
  let count = 0;
  let chars = 0;
  while (todo.length) {
    const [name, value, depth] = todo.pop()!;
    const kids = children(value, plain);
    if (kids) {
      if (depth >= MAX_DEPTH) throw new SafetensorsError("InvalidPickle", `checkpoint nests deeper than ${MAX_DEPTH} levels (or contains a cycle)`);
      // Pushed in reverse so names come out in pickle order.
      for (let i = kids.length - 1; i >= 0; i--) {
        const [k, v] = kids[i]!;
        // Checked before concatenating, so no name (nor their sum) is ever built past its limit.
        const length = name === "" ? k.length : name.length + 1 + k.length;
        if (length > MAX_NAME_LENGTH) throw new SafetensorsError("InvalidPickle", `checkpoint has a name longer than ${MAX_NAME_LENGTH} characters`);
        if ((chars += length + 1) > limits.chars) throw new SafetensorsError("InvalidPickle", `checkpoint names add up to more than ${limits.chars} characters`);
        todo.push([name === "" ? k : `${name}.${k}`, v, depth + 1]);
      }
      continue;
    }
    if (++count > limits.names) throw new SafetensorsError("InvalidPickle", `checkpoint flattens to more than ${limits.names} names`);
    const key = name === "" && value instanceof TorchTensor ? "tensor" : name;
    if (tensors.has(key) || leaves.has(key)) throw new SafetensorsError("InvalidPickle", `two entries in the checkpoint are both named ${describeLeaf(key)}`);
    if (value instanceof TorchTensor) tensors.set(key, value);
    else leaves.set(key, value);
  }
  return { tensors, leaves };
}

const SHOWN_ITEMS = 16;
const SHOWN_DEPTH = 4;
const SHOWN_CHARS = 4096;

/**
 * A short Python-like rendering of a leaf value, for display: long sequences, strings, integers and deep
 * nesting are elided, and the whole text stays near {@link SHOWN_CHARS} characters however much the
 * value shares.
 *
 * @example
 * ```ts
 * import { describeLeaf, open } from "tensormap";
 * using file = await open("training-checkpoint.pt");
 * console.log(describeLeaf(file.leaves.get("optimizer.param_groups.0.betas"))); // "(0.9, 0.999)": a Python tuple
 * ```
 */
export function describeLeaf(v: unknown): string {
  return render(v, 0, { left: SHOWN_CHARS });
}

/** Most values {@link leafJson} gives as JSON per leaf, and how deep: one list shared inside another, level by level, must not make gigabytes. */
const JSON_VALUES = 100_000;
const JSON_DEPTH = 100;

/**
 * A leaf value as JSON, for machines: None → null, booleans, ints and floats → numbers (ints past 2^53 and
 * NaN/±Infinity → their text), str → string, lists, tuples and sets → arrays, dicts → objects (a key that is not
 * a string → its {@link describeLeaf} text). What JSON has no form for (bytes, dtypes, torch globals, tensors)
 * is its `describeLeaf` text, and so is whatever lies past 100 levels or 100,000 values.
 *
 * @example
 * ```ts
 * leafJson(file.leaves.get("optimizer.param_groups.0.betas")); // [0.9, 0.999]: a Python tuple
 * ```
 */
export function leafJson(v: unknown): unknown {
  return toJson(v, 0, { left: JSON_VALUES });
}

function toJson(v: unknown, depth: number, budget: { left: number }): unknown {
  budget.left--;
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : describeLeaf(v);
  if (depth >= JSON_DEPTH || budget.left <= 0) return describeLeaf(v);
  const items = Array.isArray(v) ? v : v instanceof PyTuple || v instanceof PySet ? v.items : undefined;
  if (items) return items.map((x) => toJson(x, depth + 1, budget));
  if (v instanceof PyDict) {
    // fromEntries defines own properties: a key "__proto__" is a key, not a prototype.
    return Object.fromEntries([...v.entries()].map(([k, x]) => [typeof k === "string" ? k : describeLeaf(k), toJson(x, depth + 1, budget)]));
  }
  return describeLeaf(v);
}

function render(v: unknown, depth: number, budget: { left: number }): string {
  const text = renderOne(v, depth, budget);
  budget.left -= text.length;
  return text;
}

function renderOne(v: unknown, depth: number, budget: { left: number }): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number" || typeof v === "bigint") {
    const digits = String(v); // at most ~2,500 digits: the unpickler caps integers at 1 KiB
    return digits.length > 200 ? `${digits.slice(0, 20)}…(${digits.length} digits)` : digits;
  }
  if (typeof v === "string") return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (v instanceof TorchDtype) return v.name;
  if (v instanceof StorageType) return `torch.${v.name}`;
  if (v instanceof TorchGlobal) return v.qualname;
  if (v instanceof TorchTensor) {
    const dims = v.shape.length > SHOWN_ITEMS ? [...v.shape.slice(0, SHOWN_ITEMS), `… ${v.shape.length} dims`] : v.shape;
    return `tensor(${v.dtype}, [${dims.join(", ")}])`;
  }
  const seq = (items: Iterable<unknown>, length: number, open: string, close: string): string => {
    if (depth >= SHOWN_DEPTH) return `${open}…${close}`;
    const shown: string[] = [];
    for (const x of items) {
      if (shown.length === SHOWN_ITEMS || budget.left <= 0) break;
      shown.push(render(x, depth + 1, budget));
    }
    if (length > shown.length) shown.push(`… ${length} items`);
    return `${open}${shown.join(", ")}${length === 1 && open === "(" ? "," : ""}${close}`;
  };
  if (Array.isArray(v)) return seq(v, v.length, "[", "]");
  if (v instanceof PyTuple) return seq(v.items, v.items.length, "(", ")");
  if (v instanceof PySet) return seq(v.items, v.items.length, "{", "}");
  if (v instanceof PyDict) return seq(dictItems(v), v.size, "{", "}");
  if (v instanceof DictItem) return `${render(v.key, depth, budget)}: ${render(v.value, depth, budget)}`;
  return String(v);
}

/** A dict's items, lazily: only the shown ones are made. */
function* dictItems(d: PyDict): Generator<DictItem> {
  for (const [k, x] of d.entries()) yield new DictItem(k, x);
}

/** One `key: value` of a dict being described. */
class DictItem {
  readonly key: unknown;
  readonly value: unknown;
  constructor(key: unknown, value: unknown) {
    this.key = key;
    this.value = value;
  }
}
