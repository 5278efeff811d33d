/**
 * Only SafetensorsError escapes the reader. Shapes a few megabytes of pickle can take (300,000 levels of
 * nesting, 300,000 items after one MARK) once overflowed the JS stack or the engine's argument limit and
 * surfaced as RangeError on Node and Deno; each now reads, or fails with a code that says why.
 */
import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { openPytorchLayout } from "../../src/pickle/layout.ts";
import { PySet } from "../../src/pickle/unpickler.ts";
import { Pickle, memorySource, torchZip } from "./build.ts";

const N = 300_000;
/** Deep enough for a recursive reader to overflow; these shapes are guards, cheaper at this size. */
const M = 100_000;

function outcome(pickle: Uint8Array): string {
  try {
    const layout = openPytorchLayout(memorySource(torchZip(pickle, { "0": new Uint8Array(4) })));
    return `ok: ${layout.entries.size} tensors, ${layout.leaves.size} leaves`;
  } catch (e) {
    if (e instanceof SafetensorsError) return `${e.code}: ${e.message}`;
    throw e;
  }
}

const build = (fn: (p: Pickle) => void) => {
  const p = new Pickle().proto();
  fn(p);
  return p.stop().bytes();
};
const repeat = (p: Pickle, n: number, bytes: number[]) => {
  for (let i = 0; i < n; i++) p.raw(...bytes);
  return p;
};
const tooDeep = "InvalidPickle: checkpoint nests deeper than 1000 levels (or contains a cycle)";

test.each<[string, Uint8Array, string | RegExp]>([
  // {"s": {None, None, …}}: ADDITEMS once spread its items into push().
  ["ADDITEMS of 300,000 items", build((p) => repeat(p.emptyDict().str("s").raw(0x8f).mark(), N, [0x4e]).raw(0x90, 0x73)), "ok: 0 tensors, 1 leaves"],
  ["FROZENSET of 300,000 items", build((p) => repeat(p.emptyDict().str("s").mark(), N, [0x4e]).raw(0x91, 0x73)), "ok: 0 tensors, 1 leaves"],
  // _rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (_rebuild_from_type_v2, Tensor, (…), {}), {}): once one JS call per level.
  ["300,000 nested _rebuild_from_type_v2 calls", build((p) => {
    p.global("torch._tensor", "_rebuild_from_type_v2").raw(0x71, 1, 0x30).global("torch", "Tensor").raw(0x71, 2, 0x30);
    p.mark().global("collections", "OrderedDict").raw(0x68, 2).emptyTuple().emptyDict().tuple().raw(0x71, 3, 0x30);
    repeat(p, N, [0x28, 0x68, 1, 0x68, 2, 0x68, 3, 0x7d, 0x74, 0x71, 3, 0x30]).raw(0x68, 1, 0x68, 3, 0x52);
  }), "InvalidPickle: tensor rebuild calls nest more than 16 deep"],
  ["100,000 nested lists", build((p) => repeat(repeat(p.emptyDict().str("k"), M, [0x5d]), M - 1, [0x61]).raw(0x73)), tooDeep],
  ["100,000 nested dicts", build((p) => repeat(repeat(p, M, [0x7d, 0x8c, 1, 0x6b]).none(), M, [0x73]).raw(0x85)), tooDeep],
  ["100,000 nested tuples", build((p) => repeat(p.emptyDict().str("k").none(), M, [0x85]).raw(0x73)), tooDeep],
  ["a set nested in 100,000 tuples", build((p) => repeat(p.emptyDict().str("k").raw(0x8f), M, [0x85]).raw(0x73)), tooDeep],
  ["a dict key of 100,000 nested tuples", build((p) => repeat(p.emptyDict().none(), M, [0x85]).none().raw(0x73)), "InvalidPickle: dict key nests tuples too deeply"],
  ["a dict of 300,000 entries", build((p) => repeat(p.emptyDict().mark(), N, [0x4e, 0x4e]).raw(0x75)), "ok: 0 tensors, 1 leaves"],
  ["a list of 100,000 empty lists", build((p) => repeat(p.emptyDict().str("k").raw(0x5d).mark(), M, [0x5d]).raw(0x65, 0x73)), `ok: 0 tensors, ${M} leaves`],
])("%s", (_, pickle, expected) => {
  expect(outcome(pickle)).toMatch(expected);
});

test("a set built by ADDITEMS holds every item", () => {
  const pickle = build((p) => repeat(p.emptyDict().str("s").raw(0x8f).mark(), N, [0x4e]).raw(0x90, 0x73));
  const layout = openPytorchLayout(memorySource(torchZip(pickle, {})));
  expect((layout.leaves.get("s") as PySet).items).toHaveLength(N);
});

test("a refused name with a newline in it still makes a one-line message", () => {
  const pickle = new Pickle().proto().str("os\nx").str("system\n").raw(0x93).stop().bytes();
  expect(outcome(pickle)).toBe('UnsafePickle: refused global "os\\nx.system\\n"');
});
