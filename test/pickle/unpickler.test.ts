import { describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { PickleTruncated, PyDict, PySet, PyTuple, unpickle, type PickleHooks } from "../../src/pickle/unpickler.ts";
import { Pickle } from "./build.ts";

const refuse = (what: string) => () => {
  throw new SafetensorsError("UnsafePickle", `refused ${what}`);
};
const strict: PickleHooks = { global: refuse("global"), call: refuse("call"), build: refuse("build"), persistentLoad: refuse("persid") };

const run = (bytes: number[] | Uint8Array) => unpickle(Uint8Array.from(bytes), strict).value;
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];

function failure(bytes: number[] | Uint8Array): string {
  try {
    run(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) return `${e.code}: ${e.message}`;
    throw e;
  }
  return "no error";
}

describe("values", () => {
  test("scalars of every width", () => {
    expect(run([0x80, 2, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x2e])).toBe(-2); // BININT
    expect(run([0x4d, 0x34, 0x12, 0x2e])).toBe(0x1234); // BININT2
    expect(run([0x8a, 2, 0xff, 0x7f, 0x2e])).toBe(0x7fff); // LONG1
    expect(run([0x8a, 1, 0xff, 0x2e])).toBe(-1);
    expect(run([0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x2e])).toBe(1n << 64n); // beyond 2^53 stays exact
    expect(run([0x8b, 0, 0, 0, 0, 0x2e])).toBe(0); // LONG4 of no bytes
    expect(run([0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x2e])).toBe(1.5); // BINFLOAT, big-endian
    expect(run([...new TextEncoder().encode("I42\n"), 0x2e])).toBe(42);
    expect(run([...new TextEncoder().encode("I01\n"), 0x2e])).toBe(true);
    expect(run([...new TextEncoder().encode("F-0.25\n"), 0x2e])).toBe(-0.25);
    expect(run([0x8c, 2, 0xc3, 0xa9, 0x2e])).toBe("é"); // SHORT_BINUNICODE
    expect(run([0x55, 1, 0xe9, 0x2e])).toBe("é"); // SHORT_BINSTRING is latin-1
    expect(run([0x43, 2, 7, 8, 0x2e])).toEqual(Uint8Array.from([7, 8])); // SHORT_BINBYTES
    expect(run([0x4e, 0x2e])).toBe(null);
  });

  test("containers, memo and marks", () => {
    // [ (1, 2), {"k": {1, 2}}, same tuple again via memo ]
    const p = new Pickle().proto(4).raw(0x5d, 0x94).mark();
    p.int(1).int(2).raw(0x86, 0x94); // TUPLE2, MEMOIZE -> memo 1
    p.emptyDict().str("k").raw(0x8f).mark().int(1).int(2).raw(0x90, 0x73); // EMPTY_SET, ADDITEMS, SETITEM
    p.raw(0x68, 1).raw(0x65).stop(); // BINGET 1, APPENDS
    const v = run(p.bytes()) as unknown[];
    expect(v).toHaveLength(3);
    expect(v[0]).toBeInstanceOf(PyTuple);
    expect(v[2]).toBe(v[0]);
    const d = v[1] as PyDict;
    expect([...d.entries()][0]![1]).toEqual(new PySet([1, 2]));
  });

  test("dict keys follow Python equality: 1, 1.0 and True are one key; tuples by value", () => {
    const p = new Pickle().proto().emptyDict().mark();
    p.int(1).str("a").raw(0x88).str("b"); // 1 and True
    p.int(1).int(2).raw(0x86).str("c").int(1).int(2).raw(0x86).str("d"); // (1, 2) twice
    p.str("(1,2)").str("e"); // a string that looks like a tuple is its own key
    const d = run(p.setitems().stop().bytes()) as PyDict;
    expect([...d.entries()].map(([, v]) => v)).toEqual(["b", "d", "e"]);
  });

  test("FRAME (protocol 4) and STACK_GLOBAL go through the hooks", () => {
    const seen: string[] = [];
    const hooks = { ...strict, global: (m: string, n: string) => (seen.push(`${m}.${n}`), "G") };
    const p = new Pickle().proto(4).raw(0x95, 0, 0, 0, 0, 0, 0, 0, 0).raw(0x8c, 1, 0x6d, 0x8c, 1, 0x6e, 0x93).stop();
    expect(unpickle(p.bytes(), hooks).value).toBe("G");
    expect(seen).toEqual(["m.n"]);
  });

  test("returns where the pickle ended, so several pickles can follow each other", () => {
    const two = Uint8Array.from([0x4b, 1, 0x2e, 0x4b, 2, 0x2e]);
    const first = unpickle(two, strict);
    expect(first).toEqual({ value: 1, end: 3 });
    expect(unpickle(two, strict, first.end)).toEqual({ value: 2, end: 6 });
  });
});

describe("refusals and bounds", () => {
  test.each([
    ["INST", [0x69, ...new TextEncoder().encode("os\nsystem\n"), 0x2e]],
    ["OBJ", [0x28, 0x6f, 0x2e]],
    ["EXT1", [0x82, 1, 0x2e]],
    ["PERSID", [0x50, 0x61, 0x0a, 0x2e]],
    ["NEXT_BUFFER", [0x97, 0x2e]],
  ])("opcode %s is refused", (name, bytes) => {
    expect(failure(bytes as number[])).toMatch(new RegExp(`^UnsafePickle: refused pickle opcode ${name} at byte \\d+$`));
  });

  test("globals, calls, BUILD and persistent ids are the hooks' to refuse", () => {
    expect(failure(new Pickle().global("os", "system").stop().bytes())).toBe("UnsafePickle: refused global");
  });

  test("truncation anywhere is PickleTruncated", () => {
    const p = new Pickle().proto().emptyDict().str("key").int(70000).raw(0x73).stop().bytes();
    for (let n = 0; n < p.length; n++) {
      expect(() => unpickle(p.subarray(0, n), strict)).toThrow(PickleTruncated);
    }
  });

  test("lengths longer than the input are truncation, not allocation", () => {
    expect(failure([0x58, 0x00, 0x00, 0x00, 0x01, 0x61])).toBe("InvalidPickle: pickle is truncated"); // 16 MiB
    const p = new Pickle().proto().mark().none().none().raw(0x42, 0, 0, 0, 1).bytes(); // BINBYTES of 16 MiB, cut short
    expect(() => unpickle(p, strict)).toThrow(PickleTruncated);
    try {
      unpickle(p, strict);
    } catch (e) {
      expect((e as PickleTruncated).needed).toBe(p.length + (1 << 24)); // how far a reader of a prefix must read on
    }
  });

  test("a string or bytes object that would run the pickle past 256 MiB is PickleTooLarge, whatever follows", () => {
    // A 600 MB string is past V8's string limit (2^29 - 24 characters): it must not surface as bad UTF-8 or a RangeError.
    const limit = "PickleTooLarge: pickle runs to 600000005 bytes or more, past the 268435456-byte limit on a pickle";
    expect(failure([0x58, ...u32(600_000_000), 0x61])).toBe(limit);
    expect(failure([0x8d, ...u32(600_000_000), 0, 0, 0, 0, 0x61])).toBe(limit.replace("600000005", "600000009"));
    expect(failure([0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])).toMatch(/^PickleTooLarge: pickle runs to \d+ bytes or more/);
  });

  test("deep nesting fails cleanly instead of overflowing the stack", () => {
    expect(failure(new Array(20_000).fill(0x28))).toBe("InvalidPickle: pickle nests marks too deeply");
    // 200,000 nested one-item tuples need no marks; building them is fine and iterative.
    const nested = [0x4e, ...new Array(200_000).fill(0x85), 0x2e];
    expect(run(nested)).toBeInstanceOf(PyTuple);
    // As a dict key, such a tuple is rejected rather than hashed recursively.
    expect(failure([0x7d, ...nested.slice(0, -1), 0x4e, 0x73, 0x2e])).toBe("InvalidPickle: dict key nests tuples too deeply");
  });

  test("a tuple key whose shared items spell an exponentially long text fails cleanly", () => {
    // t0 = ("xxxx…",); t[i] = (t[i-1], t[i-1]): 63 levels of sharing, a few hundred bytes of pickle.
    const p = new Pickle().emptyDict().str("x".repeat(200)).raw(0x85, 0x71, 0, 0x30);
    for (let i = 1; i < 64; i++) p.raw(0x68, i - 1, 0x68, i - 1, 0x86, 0x71, i, 0x30);
    expect(failure(p.raw(0x68, 63).none().raw(0x73).stop().bytes())).toMatch(/^InvalidPickle: dict key is longer than \d+ characters$/);
  });

  test("huge and missing memo indices", () => {
    // LONG_BINPUT 0xffffffff then LONG_BINGET of it: a sparse memo costs nothing.
    expect(run([0x4b, 7, 0x72, 0xff, 0xff, 0xff, 0xff, 0x30, 0x6a, 0xff, 0xff, 0xff, 0xff, 0x2e])).toBe(7);
    expect(failure([0x6a, 0xfe, 0xff, 0xff, 0xff, 0x2e])).toBe("InvalidPickle: pickle reads memo 4294967294, which was never stored");
  });

  test("malformed stacks", () => {
    expect(failure([0x2e])).toBe("InvalidPickle: pickle stack is not a single value at STOP");
    expect(failure([0x4e, 0x4e, 0x2e])).toBe("InvalidPickle: pickle stack is not a single value at STOP");
    expect(failure([0x28, 0x30, 0x2e])).toBe("InvalidPickle: pickle stack underflow");
    expect(failure([0x74])).toBe("InvalidPickle: pickle has no MARK to pop to");
    expect(failure([0x4e, 0x4e, 0x61, 0x2e])).toBe("InvalidPickle: APPEND on a value that is not a list");
    expect(failure([0x7d, 0x5d, 0x4e, 0x73, 0x2e])).toBe("InvalidPickle: unhashable dict key in pickle");
    expect(failure([0x58, 1, 0, 0, 0, 0xff, 0x2e])).toBe("InvalidPickle: string in pickle is not valid UTF-8");
    expect(failure([0xff])).toBe("InvalidPickle: unknown pickle opcode 0xff at byte 0");
    expect(failure([0x80, 6])).toBe("InvalidPickle: pickle protocol newer than 5");
  });
});
