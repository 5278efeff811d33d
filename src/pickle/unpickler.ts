/**
 * A pickle machine that never executes anything. It knows the opcodes of protocols 0–5 that data files
 * use; globals, calls (REDUCE/NEWOBJ), BUILD and persistent ids are handed to caller-supplied hooks, which
 * decide what is allowed. Opcodes that import or instantiate by themselves (INST, OBJ, EXT*) and out-of-band
 * buffers are refused. It runs as a flat loop over one value stack (marks are indices into it), so hostile
 * nesting cannot overflow the JS stack, and every length is checked against the bytes actually present.
 * What the opcodes build is bounded by the input (each consumes a byte or more and builds a few words at most);
 * what they can make hooks build from one shared value, again and again, is bounded by a {@link PickleBudget}.
 */
import { SafetensorsError } from "../errors.ts";

/**
 * The longest pickle this runs, counted from the start of its input (pickles read one after another, as in a
 * legacy checkpoint, share it). Tensor data lives outside the pickle, so a real checkpoint's is kilobytes to
 * a few megabytes; a longer one is refused before it is read into memory, and no string in it can reach the
 * engines' string limits (V8's is 2^29 − 24 characters), which would otherwise fail as something else.
 */
export const MAX_PICKLE_BYTES = 1 << 28;

/** Bounds that keep hostile input from exhausting memory. Lengths are already bounded by the input. */
const MAX_MARK_DEPTH = 10_000;
const MAX_STACK = 1 << 24;
const MAX_LONG_BYTES = 1024;
const MAX_KEY_DEPTH = 64;
/** Longest canonical text of a tuple key (a real one is a few names or numbers). */
const MAX_KEY_TEXT = 1024;

/** What one item of a container costs a {@link PickleBudget}: a pointer's worth of memory. */
export const ITEM_BYTES = 8;

/**
 * The memory (and so the work) a pickle may make its hooks build, in bytes: {@link PickleBudget.FLOOR} plus
 * {@link PickleBudget.PER_BYTE} per pickle byte. A real checkpoint spends a fraction of a byte of it per pickle
 * byte (0.15–0.27 for the torch.save fixtures); a hostile one would spend it by handing one memoized value (a
 * 1 MiB string, a long list) to an allowed constructor again and again. Each call charges what it builds,
 * before or just after building it (one call builds at most what its arguments hold), so running out
 * (`PickleTooLarge`) stops a payload within one call of the limit.
 *
 * @example
 * ```ts
 * const budget = new PickleBudget(pickle.length);
 * budget.spend(ITEM_BYTES * items.length); // throws PickleTooLarge once past budget.limit
 * ```
 */
export class PickleBudget {
  static readonly FLOOR = 1 << 24;
  static readonly PER_BYTE = 16;
  readonly limit: number;
  #spent = 0;

  readonly pickleBytes: number;

  constructor(pickleBytes: number) {
    this.pickleBytes = pickleBytes;
    this.limit = PickleBudget.FLOOR + PickleBudget.PER_BYTE * pickleBytes;
  }

  /** Bytes charged so far. */
  get spent(): number {
    return this.#spent;
  }

  /** Charges `bytes`; throws `PickleTooLarge` once the total passes the limit. */
  spend(bytes: number): void {
    if ((this.#spent += bytes) > this.limit) {
      throw new SafetensorsError("PickleTooLarge", `a pickle of ${this.pickleBytes} bytes builds more than its budget of ${this.limit} bytes (${PickleBudget.FLOOR} + ${PickleBudget.PER_BYTE} per pickle byte)`);
    }
  }
}

/** A Python tuple (lists are plain arrays). */
export class PyTuple {
  readonly items: readonly unknown[];
  constructor(items: readonly unknown[]) {
    this.items = items;
  }
}

/** A Python set or frozenset, kept as its items in order. */
export class PySet {
  readonly items: unknown[];
  constructor(items: unknown[]) {
    this.items = items;
  }
}

/**
 * A Python dict. Keys are kept by value (strings, numbers, bigints, booleans, None, tuples of those),
 * in insertion order, in a `Map` so no key can reach `Object.prototype`.
 */
export class PyDict {
  private readonly map = new Map<unknown, [unknown, unknown]>();
  /** Tuple keys: canonical text → one token object, so no string key can collide with a tuple. */
  private readonly tuples = new Map<string, object>();

  /** Sets `key` to `value`; the text a tuple key hashes to is charged to `budget` (a shared tuple can key many dicts). */
  set(key: unknown, value: unknown, budget?: PickleBudget): void {
    let k = hashKey(key, budget);
    if (key instanceof PyTuple) {
      const text = k as string;
      k = this.tuples.get(text) ?? {};
      this.tuples.set(text, k as object);
    }
    this.map.set(k, [key, value]);
  }

  get size(): number {
    return this.map.size;
  }

  /** `[key, value]` pairs in insertion order. */
  entries(): IterableIterator<[unknown, unknown]> {
    return this.map.values();
  }
}

/**
 * Python's key equality for the key types data files use (1, 1.0 and True are one key); a tuple maps to
 * unambiguous canonical text. Mutable keys are unhashable, as in Python.
 */
function hashKey(key: unknown, budget: PickleBudget | undefined, depth = 0): unknown {
  if (typeof key === "boolean") return key ? 1 : 0;
  if (typeof key === "bigint") return narrow(key);
  if (key === null || typeof key !== "object") return key;
  if (key instanceof PyTuple) {
    if (depth > MAX_KEY_DEPTH) throw new SafetensorsError("InvalidPickle", "dict key nests tuples too deeply");
    let length = 0;
    const parts = key.items.map((item) => {
      const h = hashKey(item, budget, depth + 1);
      const part = item instanceof PyTuple ? (h as string) : typeof h === "string" ? JSON.stringify(h) : typeof h === "bigint" ? `${h}n` : String(h);
      // Shared items let a few bytes describe an exponentially long key; refuse before the text gets there.
      if ((length += part.length + 1) > MAX_KEY_TEXT) throw new SafetensorsError("InvalidPickle", `dict key is longer than ${MAX_KEY_TEXT} characters`);
      return part;
    });
    budget?.spend(2 * length);
    return `(${parts.join(",")})`;
  }
  throw new SafetensorsError("InvalidPickle", "unhashable dict key in pickle");
}

/** What the caller allows. Each hook throws a `SafetensorsError` (code `UnsafePickle`) to refuse. */
export interface PickleHooks {
  /** GLOBAL / STACK_GLOBAL: the object named `module.name`. */
  global(module: string, name: string): unknown;
  /** REDUCE and NEWOBJ: `callable(*args)`, charging what it builds to `budget`. */
  call(callable: unknown, args: readonly unknown[], budget: PickleBudget): unknown;
  /** BUILD: `obj.__setstate__(state)`; returns the object that stays on the stack. */
  build(obj: unknown, state: unknown): unknown;
  /** BINPERSID: the object a persistent id stands for. */
  persistentLoad(pid: unknown): unknown;
}

/** The pickle ended before STOP. A separate class so a reader that fed a prefix can fetch more and retry. */
export class PickleTruncated extends SafetensorsError {
  /** How many bytes of the input (from its index 0) the pickle needs at least. */
  readonly needed: number;

  constructor(needed: number) {
    super("InvalidPickle", "pickle is truncated");
    this.needed = needed;
  }
}

function tooLarge(length: number): SafetensorsError {
  return new SafetensorsError("PickleTooLarge", `pickle runs to ${length} bytes or more, past the ${MAX_PICKLE_BYTES}-byte limit on a pickle`);
}


const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

const OPCODE_NAMES: Record<number, string> = {
  0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
  0x4a: "BININT", 0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID",
  0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
  0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
  0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6a: "LONG_BINGET",
  0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
  0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT", 0x80: "PROTO",
  0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3",
  0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
  0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS",
  0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME",
  0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
};

function invalid(message: string): SafetensorsError {
  return new SafetensorsError("InvalidPickle", message);
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Little-endian two's-complement integer of `bytes` (LONG1/LONG4), as a number when exact. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  // One parse of the hex digits: shifting a BigInt byte by byte is quadratic in the length.
  let hex = "0x";
  for (let i = bytes.length - 1; i >= 0; i--) hex += HEX[bytes[i]!];
  let v = BigInt(hex);
  if (bytes[bytes.length - 1]! & 0x80) v -= 1n << BigInt(bytes.length * 8);
  return narrow(v);
}

function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Protocol 0 integer text (`INT`/`LONG` lines): digits with an optional sign and trailing `L`. */
function parseIntText(text: string): number | bigint | boolean {
  if (text === "00") return false;
  if (text === "01") return true;
  const m = /^([+-]?\d{1,400})L?$/.exec(text);
  if (!m) throw invalid(`bad integer literal in pickle: ${JSON.stringify(text.slice(0, 40))}`);
  return narrow(BigInt(m[1]!));
}

/**
 * Runs one pickle from `data[start]` to its STOP and returns the value and the offset just past STOP.
 * Throws `PickleTruncated` if `data` ends first, `SafetensorsError("UnsafePickle")` for a refused opcode
 * (or whatever the hooks refuse), `SafetensorsError("InvalidPickle")` for malformed input, and
 * `SafetensorsError("PickleTooLarge")` for a pickle that runs past {@link MAX_PICKLE_BYTES} or spends more
 * than its `budget` (by default, the budget of the bytes from `start` on).
 *
 * @example
 * ```ts
 * const { value } = unpickle(bytes, {
 *   global: (m, n) => { throw new SafetensorsError("UnsafePickle", `refused global ${m}.${n}`); },
 *   call: () => { throw new SafetensorsError("UnsafePickle", "refused call"); },
 *   build: () => { throw new SafetensorsError("UnsafePickle", "refused BUILD"); },
 *   persistentLoad: () => { throw new SafetensorsError("UnsafePickle", "refused persistent id"); },
 * });
 * ```
 */
export function unpickle(
  data: Uint8Array,
  hooks: PickleHooks,
  start = 0,
  budget = new PickleBudget(Math.max(0, Math.min(data.length, MAX_PICKLE_BYTES) - start)),
): { value: unknown; end: number } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = start;
  // Where reading stops: the end of the input, or the size limit if that comes first.
  const limit = Math.min(data.length, MAX_PICKLE_BYTES);

  const need = (n: number): void => {
    if (pos + n > limit) throw pos + n > MAX_PICKLE_BYTES ? tooLarge(pos + n) : new PickleTruncated(pos + n);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = data.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = (): number => {
    need(1);
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    // Anything this long cannot be present anyway; the bounds check in `take` reports it as truncated.
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  };
  /** A protocol 0 text argument: bytes up to the next newline. */
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0 || nl >= limit) need(limit + 1 - pos);
    const text = latin1.decode(data.subarray(pos, nl));
    pos = nl + 1;
    return text;
  };
  const text = (bytes: Uint8Array): string => {
    try {
      return utf8.decode(bytes);
    } catch {
      throw invalid("string in pickle is not valid UTF-8");
    }
  };

  const push = (v: unknown): void => {
    if (stack.length >= MAX_STACK) throw invalid("pickle stack is too deep");
    stack.push(v);
  };
  const pop = (): unknown => {
    const floor = marks.length ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) throw invalid("pickle stack underflow");
    return stack.pop();
  };
  const top = (): unknown => {
    const floor = marks.length ? marks[marks.length - 1]! : 0;
    if (stack.length <= floor) throw invalid("pickle stack underflow");
    return stack[stack.length - 1];
  };
  /** Items pushed since the last MARK, which is consumed. */
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) throw invalid("pickle has no MARK to pop to");
    return stack.splice(m);
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) throw invalid(`pickle reads memo ${i}, which was never stored`);
    return memo.get(i);
  };
  const memoPut = (i: number): void => {
    memo.set(i, top());
  };
  const asList = (v: unknown, op: string): unknown[] => {
    if (!Array.isArray(v)) throw invalid(`${op} on a value that is not a list`);
    return v;
  };
  const asDict = (v: unknown, op: string): PyDict => {
    if (!(v instanceof PyDict)) throw invalid(`${op} on a value that is not a dict`);
    return v;
  };
  const asSet = (v: unknown, op: string): PySet => {
    if (!(v instanceof PySet)) throw invalid(`${op} on a value that is not a set`);
    return v;
  };
  const setItems = (dict: PyDict, items: unknown[]): void => {
    if (items.length % 2) throw invalid("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) dict.set(items[i], items[i + 1], budget);
  };
  const tupleArgs = (v: unknown, op: string): readonly unknown[] => {
    if (!(v instanceof PyTuple)) throw invalid(`${op} arguments are not a tuple`);
    return v.items;
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw invalid("pickle protocol newer than 5");
        break;
      case 0x95: // FRAME: the whole pickle is already in memory; only the length is checked.
        need(8);
        pos += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) throw invalid("pickle stack is not a single value at STOP");
        return { value: stack[0], end: pos };
      case 0x28: // MARK
        if (marks.length >= MAX_MARK_DEPTH) throw invalid("pickle nests marks too deeply");
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        need(4);
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
        push(decodeLong(take(u8())));
        break;
      case 0x8b: { // LONG4
        const n = u32();
        if (n > MAX_LONG_BYTES) throw invalid(`pickle integer of ${n} bytes is too long`);
        push(decodeLong(take(n)));
        break;
      }
      case 0x49: // INT
      case 0x4c: // LONG
        push(parseIntText(line()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: { // FLOAT
        const t = line().trim();
        const v = Number(t);
        if (t === "" || (Number.isNaN(v) && !/^[+-]?nan$/i.test(t))) throw invalid("bad float literal in pickle");
        push(v);
        break;
      }
      case 0x58: // BINUNICODE
        push(text(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(text(take(u64())));
        break;
      case 0x54: // BINSTRING (Python 2 str), read as latin-1 text
        push(latin1.decode(take(u32())));
        break;
      case 0x55: // SHORT_BINSTRING
        push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        push(new PyTuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        push(new PyTuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: { // APPEND
        const v = pop();
        asList(top(), "APPEND").push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = asList(top(), "APPENDS");
        for (const item of items) list.push(item);
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x64: { // DICT
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        asDict(top(), "SETITEM").set(k, v, budget);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(asDict(top(), "SETITEMS"), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new PySet([]));
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        // A loop: spreading a long mark's items into push() overflows the engine's argument limit.
        const set = asSet(top(), "ADDITEMS").items;
        for (const item of items) set.push(item);
        break;
      }
      case 0x91: // FROZENSET
        push(new PySet(popMark()));
        break;
      case 0x67: { // GET
        const t = line();
        if (!/^\d{1,15}$/.test(t)) throw invalid("bad memo index in pickle");
        push(memoGet(Number(t)));
        break;
      }
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      case 0x70: { // PUT
        const t = line();
        if (!/^\d{1,15}$/.test(t)) throw invalid("bad memo index in pickle");
        memoPut(Number(t));
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        push(hooks.global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") throw invalid("STACK_GLOBAL needs two strings");
        push(hooks.global(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = tupleArgs(pop(), "REDUCE");
        const fn = pop();
        push(hooks.call(fn, args, budget));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = tupleArgs(pop(), "NEWOBJ");
        const cls = pop();
        push(hooks.call(cls, args, budget));
        break;
      }
      case 0x92: { // NEWOBJ_EX: keyword arguments are not something any allowed class takes.
        const kwargs = pop();
        const args = tupleArgs(pop(), "NEWOBJ_EX");
        const cls = pop();
        if (!(kwargs instanceof PyDict) || kwargs.size) throw new SafetensorsError("UnsafePickle", "refused NEWOBJ_EX with keyword arguments");
        push(hooks.call(cls, args, budget));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = pop();
        push(hooks.build(obj, state));
        break;
      }
      case 0x51: // BINPERSID
        push(hooks.persistentLoad(pop()));
        break;
      default: {
        const name = OPCODE_NAMES[op];
        if (name) throw new SafetensorsError("UnsafePickle", `refused pickle opcode ${name} at byte ${at}`);
        throw invalid(`unknown pickle opcode 0x${op.toString(16).padStart(2, "0")} at byte ${at}`);
      }
    }
  }
}
