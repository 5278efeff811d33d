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

export interface Flattened {
  /** Tensors by dotted name, in pickle order. */
  readonly tensors: Map<string, TorchTensor>;
  /** Everything that is not a tensor, by dotted name, as unpickled (see {@link describeLeaf}). */
  readonly leaves: Map<string, unknown>;
}

function keyName(key: unknown): string {
  if (typeof key === "string") return key;
  if (typeof key === "number" || typeof key === "bigint") return String(key);
  return describeLeaf(key);
}

function isContainer(v: unknown): boolean {
  return v instanceof PyDict || Array.isArray(v) || v instanceof PyTuple;
}

function children(v: unknown): Array<[string, unknown]> | undefined {
  if (v instanceof PyDict) return v.size ? [...v.entries()].map(([k, x]) => [keyName(k), x]) : undefined;
  const items = Array.isArray(v) ? v : v instanceof PyTuple ? v.items : undefined;
  // A list of plain values (tags, betas, param ids) reads better as one leaf than as one name per item.
  if (!items || !items.some((x) => isContainer(x) || x instanceof TorchTensor)) return undefined;
  return items.map((x, i) => [String(i), x]);
}

/**
 * Flattens a checkpoint object. A tensor at the root is named `tensor`; two paths that flatten to the same
 * name are an error rather than a silent overwrite. `maxNames` bounds the output: shared references let a
 * small pickle describe exponentially many paths, so callers derive it from the pickle's size.
 *
 * @example
 * ```ts
 * const { tensors, leaves } = flatten(value, 1 << 16);
 * tensors.get("model.fc.weight"); leaves.get("epoch"); // 3
 * ```
 */
export function flatten(root: unknown, maxNames: number): Flattened {
  const tensors = new Map<string, TorchTensor>();
  const leaves = new Map<string, unknown>();
  const todo: Array<[string, unknown, number]> = [["", root, 0]];
  let count = 0;
  while (todo.length) {
    const [name, value, depth] = todo.pop()!;
    const kids = children(value);
    if (kids) {
      if (depth >= MAX_DEPTH) throw new SafetensorsError("InvalidPickle", `checkpoint nests deeper than ${MAX_DEPTH} levels (or contains a cycle)`);
      // Pushed in reverse so names come out in pickle order.
      for (let i = kids.length - 1; i >= 0; i--) {
        const [k, v] = kids[i]!;
        todo.push([name === "" ? k : `${name}.${k}`, v, depth + 1]);
      }
      continue;
    }
    if (++count > maxNames) throw new SafetensorsError("InvalidPickle", `checkpoint flattens to more than ${maxNames} names`);
    const key = name === "" && value instanceof TorchTensor ? "tensor" : name;
    if (tensors.has(key) || leaves.has(key)) throw new SafetensorsError("InvalidPickle", `two entries in the checkpoint are both named ${JSON.stringify(key)}`);
    if (value instanceof TorchTensor) tensors.set(key, value);
    else leaves.set(key, value);
  }
  return { tensors, leaves };
}

const SHOWN_ITEMS = 16;
const SHOWN_DEPTH = 4;

/**
 * A short Python-like rendering of a leaf value, for display: long sequences and deep nesting are elided.
 *
 * @example
 * ```ts
 * describeLeaf(new PyTuple([0.9, 0.999])); // "(0.9, 0.999)"
 * ```
 */
export function describeLeaf(v: unknown, depth = 0): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (typeof v === "string") return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (v instanceof TorchDtype) return v.name;
  if (v instanceof StorageType) return `torch.${v.name}`;
  if (v instanceof TorchGlobal) return v.qualname;
  if (v instanceof TorchTensor) return `tensor(${v.dtype}, [${v.shape.join(", ")}])`;
  const seq = (items: readonly unknown[], open: string, close: string): string => {
    if (depth >= SHOWN_DEPTH) return `${open}…${close}`;
    const shown = items.slice(0, SHOWN_ITEMS).map((x) => describeLeaf(x, depth + 1));
    if (items.length > SHOWN_ITEMS) shown.push(`… ${items.length} items`);
    return `${open}${shown.join(", ")}${items.length === 1 && open === "(" ? "," : ""}${close}`;
  };
  if (Array.isArray(v)) return seq(v, "[", "]");
  if (v instanceof PyTuple) return seq(v.items, "(", ")");
  if (v instanceof PySet) return seq(v.items, "{", "}");
  if (v instanceof PyDict) return seq([...v.entries()].map(([k, x]) => new DictItem(k, x)), "{", "}");
  if (v instanceof DictItem) return `${describeLeaf(v.key, depth)}: ${describeLeaf(v.value, depth)}`;
  return String(v);
}

/** One `key: value` of a dict being described. */
class DictItem {
  constructor(readonly key: unknown, readonly value: unknown) {}
}
