/**
 * Work and memory stay bounded by the file. The unpickler's budget: 16 MiB plus 16 bytes per pickle byte
 * of what allowed calls may build (a container item counts 8 bytes). Each payload below makes an allowed
 * call again and again on one memoized value, a few bytes of pickle per call; each is stopped with
 * `PickleTooLarge` within one call of the budget, while a few calls of the same kind read fine.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { open } from "../../src/checkpoint/open.ts";
import type { ByteSource } from "../../src/io/source.ts";
import { openRead } from "../../src/io/read.ts";
import { describeLeaf, openPytorchLayout } from "../../src/pickle/layout.ts";
import { torchHooks } from "../../src/pickle/torch.ts";
import { PickleBudget, unpickle } from "../../src/pickle/unpickler.ts";
import { Pickle, legacyFile, memorySource, outcome, repeatedCall, statePickle, storedZip, torchZip } from "./build.ts";

const MiB = 1 << 20;
const dir = mkdtempSync(path.join(tmpdir(), "tensormap-budget-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A list of `n` copies of whatever `item` pushes (one memo slot, so each copy is two bytes of pickle). */
const list = (p: Pickle, n: number, item: (p: Pickle) => void) => {
  item(p);
  p.raw(0x71, 9, 0x30, 0x5d).mark();
  for (let i = 0; i < n; i++) p.raw(0x68, 9);
  return p.raw(0x65);
};
const storage = (p: Pickle) => p.mark().str("storage").global("torch", "ByteStorage").str("0").str("cpu").int(1).tuple().raw(0x51);

/** [what, global, the memoized argument tuple, the most one call charges] */
const payloads: Array<[string, string, string, (p: Pickle) => void, number]> = [
  ["bytearray of 1 MiB", "builtins", "bytearray", (p) => p.mark().binbytes(new Uint8Array(MiB)).tuple(), MiB],
  ["_codecs.encode of 1 MiB", "_codecs", "encode", (p) => p.mark().str("x".repeat(MiB)).str("latin1").tuple(), MiB],
  ["torch.device of 1 MiB", "torch", "device", (p) => p.mark().str("x".repeat(MiB)).tuple(), MiB],
  ["set of 100,000 equal members", "builtins", "set", (p) => list(p.mark(), 100_000, (q) => q.none()).tuple(), 8e5],
  ["frozenset of 100,000 equal members", "builtins", "frozenset", (p) => list(p.mark(), 100_000, (q) => q.int(7)).tuple(), 8e5],
  ["torch.Size of 100,000 dimensions", "torch", "Size", (p) => list(p.mark(), 100_000, (q) => q.int(1)).tuple(), 8e5],
  ["OrderedDict of 100,000 copies of one pair", "collections", "OrderedDict", (p) => list(p.mark(), 100_000, (q) => q.str("k").none().raw(0x86)).tuple(), 1.6e6],
  ["_rebuild_tensor_v2 with 100,000 dimensions", "torch._utils", "_rebuild_tensor_v2", (p) => {
    storage(p.mark());
    list(p.int(0), 100_000, (q) => q.int(1));
    list(p, 100_000, (q) => q.int(0));
    p.false().global("collections", "OrderedDict").emptyTuple().reduce().tuple();
  }, 1.6e6],
];

describe("the budget stops repeated calls on one memoized value", () => {
  test.each(payloads)("%s", (_, module, name, args, perCall) => {
    const pickle = repeatedCall(module, name, args, 200);
    expect(outcome(() => openPytorchLayout(memorySource(torchZip(pickle, { "0": new Uint8Array(1) }))))).toMatch(/^PickleTooLarge: /);
    const budget = new PickleBudget(pickle.length);
    expect(budget.limit).toBe(16 * MiB + 16 * pickle.length);
    expect(outcome(() => unpickle(pickle, torchHooks(new Map()), 0, budget))).toBe(
      `PickleTooLarge: a pickle of ${pickle.length} bytes builds more than its budget of ${budget.limit} bytes (16777216 + 16 per pickle byte)`,
    );
    expect(budget.spent).toBeGreaterThan(budget.limit);
    expect(budget.spent).toBeLessThanOrEqual(budget.limit + perCall);
    // A few calls of the same kind are fine.
    expect(outcome(() => unpickle(repeatedCall(module, name, args, 3), torchHooks(new Map())))).toBe("ok");
  });

  test("results kept rather than thrown away are stopped the same way, by the checkpoint reader", () => {
    const pickle = repeatedCall("builtins", "bytearray", (p) => p.mark().binbytes(new Uint8Array(MiB)).tuple(), 1000, true);
    expect(outcome(() => openPytorchLayout(memorySource(torchZip(pickle, {}))))).toMatch(/^PickleTooLarge: a pickle of \d+ bytes builds more than its budget/);
  });

  test("hashing one long tuple key again and again is charged too", () => {
    // {} and ("x" * 1000,) in the memo, then d[t] = None 100,000 times: 7 bytes of pickle, 2 KB of key text each.
    const p = new Pickle().proto().emptyDict().raw(0x71, 0, 0x30).str("x".repeat(1000)).raw(0x85, 0x71, 1, 0x30);
    for (let i = 0; i < 100_000; i++) p.raw(0x68, 0, 0x68, 1, 0x4e, 0x73, 0x30);
    expect(outcome(() => unpickle(p.none().stop().bytes(), torchHooks(new Map())))).toMatch(/^PickleTooLarge: a pickle of \d+ bytes builds more than its budget/);
  });
});

describe("views", () => {
  test("a broadcast view is described from its storage, and copying it out is refused beyond its bound", async () => {
    // One byte of storage viewed as 16,384 × 16,384 (stride 0): a 600-byte file describing 256 MiB.
    const file = path.join(dir, "broadcast.pt");
    const bytes = torchZip(statePickle([{ name: "b", storage: "ByteStorage", key: "0", numel: 1, shape: [16_384, 16_384], stride: [0, 0] }]), { "0": Uint8Array.of(7) });
    writeFileSync(file, bytes);
    expect(bytes.length).toBeLessThan(1000);
    using f = await open(file);
    expect(f.info("b")).toMatchObject({ shape: [16_384, 16_384], byteLength: 256 * MiB });
    const message = `TensorTooLarge: tensor b is a view that expands 1 bytes of storage to ${256 * MiB} bytes; copying out more than 16× its storage (or ${64 * MiB} bytes) is refused`;
    expect(outcome(() => f.tensor("b"))).toBe(message);
    expect(outcome(() => [...f.chunks("b")])).toBe(message);
  });

  test("one tensor of 10,000 dimensions named 20,000 times is worked out once, and described briefly", () => {
    // Each name once cost a pass over every dimension: 2·10^8 steps from a 200 KB pickle.
    const p = new Pickle().proto().global("torch._utils", "_rebuild_tensor_v2").mark();
    storage(p);
    list(p.int(0), 10_000, (q) => q.int(1));
    list(p, 10_000, (q) => q.int(0));
    p.false().global("collections", "OrderedDict").emptyTuple().reduce().tuple().reduce().raw(0x71, 1, 0x30);
    p.emptyDict().mark();
    for (let i = 0; i < 20_000; i++) p.int(i).raw(0x68, 1);
    p.setitems().str("set").global("builtins", "set").mark().raw(0x5d, 0x68, 1, 0x61).tuple().reduce().raw(0x73);
    const layout = openPytorchLayout(memorySource(torchZip(p.stop().bytes(), { "0": new Uint8Array(1) })));
    expect(layout.entries.size).toBe(20_000);
    expect(layout.entries.get("19999")!.shape).toBe(layout.entries.get("0")!.shape);
    expect(describeLeaf(layout.leaves.get("set"))).toBe(`{tensor(U8, [${"1, ".repeat(16)}… 10000 dims])}`);
  });
});

/** A source over a real file that counts the bytes asked of it, and refuses (as no SafetensorsError) to read a lot. */
function counted(file: string): { source: ByteSource; read: () => number } {
  const real = openRead(file);
  let read = 0;
  const source: ByteSource = {
    ...real,
    bytes(offset, length) {
      read += length;
      if (length > 64 * MiB) throw new Error(`asked to read ${length} bytes`);
      return real.bytes(offset, length);
    },
  };
  return { source, read: () => read };
}

/** A sparse file: `head` at 0, `tail` at `tailAt`, a hole between. */
function sparse(name: string, head: Uint8Array, tail: Uint8Array, tailAt: number): string {
  const file = path.join(dir, name);
  const fd = openSync(file, "w");
  writeSync(fd, head, 0, head.length, 0);
  writeSync(fd, tail, 0, tail.length, tailAt);
  closeSync(fd);
  return file;
}

describe("files that claim more than they hold", () => {
  test("a sparse legacy file whose pickle claims 4 GiB is refused after reading 64 KiB", () => {
    // The main pickle opens a 4 GiB bytes object (BINBYTES8) that the file's hole would supply.
    const claim = Uint8Array.of(0x80, 2, 0x8e, 0, 0, 0, 0, 1, 0, 0, 0);
    const file = sparse("claims.pt", legacyFile(claim, []), Uint8Array.of(0), 4 * 1024 * MiB);
    const { source, read } = counted(file);
    expect(outcome(() => openPytorchLayout(source))).toMatch(/^PickleTooLarge: pickle runs to 4294967\d\d\d bytes or more, past the 268435456-byte limit on a pickle$/);
    expect(read()).toBeLessThanOrEqual(8 + (1 << 16)); // the prefix, then the first read
    source.close();
  });

  test("a zip whose data.pkl claims 300 MiB is refused without reading it", () => {
    // One entry, its data a 300 MiB hole, the central directory after it.
    const size = 300 * MiB;
    const zip = storedZip([{ name: "archive/data.pkl", data: new Uint8Array(0), size }]);
    const local = 30 + "archive/data.pkl".length;
    const tail = zip.slice(local);
    new DataView(tail.buffer).setUint32(tail.length - 22 + 16, local + size, true);
    const file = sparse("big-pkl.pt", zip.subarray(0, local), tail, local + size);
    const { source, read } = counted(file);
    expect(outcome(() => openPytorchLayout(source))).toBe(`PickleTooLarge: ${file}: archive/data.pkl is ${size} bytes, more than the 268435456 a pickle may be`);
    expect(read()).toBeLessThan(1 << 17);
    source.close();
  });
});
