import { expect, test } from "vitest";
import { globRegExp, nameFilter } from "../../src/cli/glob.ts";

test("a glob matches whole names: * any run (dots included), ? one character, the rest literally", () => {
  const names = ["h.0.attn.c_attn.weight", "h.10.attn.bias", "h.0.mlp.c_fc.weight", "wte.weight", "a+b(c)[d]", "x.y", "model-0/{1}|\\$"];
  const match = (g: string) => names.filter((n) => globRegExp(g).test(n));
  expect(match("h.*.attn.*")).toEqual(["h.0.attn.c_attn.weight", "h.10.attn.bias"]);
  expect(match("h.?.*")).toEqual(["h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight"]);
  expect(match("*weight")).toEqual(["h.0.attn.c_attn.weight", "h.0.mlp.c_fc.weight", "wte.weight"]);
  expect(match("wte")).toEqual([]);
  expect(match("a+b(c)[d]")).toEqual(["a+b(c)[d]"]);
  expect(match("x?y")).toEqual(["x.y"]);
  expect(match("x.y")).toEqual(["x.y"]);
  expect(match("model-0/{1}|\\$")).toEqual(["model-0/{1}|\\$"]);
  expect(globRegExp("x.y").test("xzy")).toBe(false);
});

test("filters: any include, less any !exclude; only excludes keep the rest; none keeps everything", () => {
  expect(nameFilter([])).toBeUndefined();
  const keep = nameFilter(["model.*", "!*.bias"])!;
  expect(["model.fc.weight", "model.fc.bias", "optimizer.state.0.exp_avg"].map(keep)).toEqual([true, false, false]);
  const noOptimizer = nameFilter(["!optimizer.*"])!;
  expect(["model.fc.weight", "epoch", "optimizer.state.0.exp_avg"].map(noOptimizer)).toEqual([true, true, false]);
});
