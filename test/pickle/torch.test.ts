import { describe, expect, test } from "vitest";
import { openPytorchLayout } from "../../src/pickle/layout.ts";
import { Pickle, legacyFile, memorySource, outcome, statePickle, torchZip, type TensorSpec } from "./build.ts";

function open(tensors: TensorSpec[], storages: Record<string, Uint8Array>) {
  const source = memorySource(torchZip(statePickle(tensors), storages));
  const layout = openPytorchLayout(source);
  const bytes = (name: string) => {
    const e = layout.entries.get(name)!;
    return e.gather ? e.gather(source) : source.bytes(e.start, e.byteLength);
  };
  return { layout, bytes };
}

function iota(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i);
}

describe("dtypes", () => {
  const typed: Array<[string, string, number]> = [
    ["DoubleStorage", "F64", 8], ["FloatStorage", "F32", 4], ["HalfStorage", "F16", 2], ["BFloat16Storage", "BF16", 2],
    ["LongStorage", "I64", 8], ["IntStorage", "I32", 4], ["ShortStorage", "I16", 2], ["CharStorage", "I8", 1],
    ["ByteStorage", "U8", 1], ["BoolStorage", "BOOL", 1], ["ComplexFloatStorage", "C64", 8],
  ];
  test.each(typed)("torch.%s reads as %s", (storage, dtype, size) => {
    const { layout, bytes } = open([{ name: "t", storage, key: "0", numel: 3, shape: [3] }], { "0": iota(3 * size) });
    expect(layout.entries.get("t")).toMatchObject({ dtype, shape: [3], byteLength: 3 * size });
    expect(bytes("t")).toEqual(iota(3 * size));
  });

  const untyped: Array<[string, string, number]> = [
    ["uint16", "U16", 2], ["uint32", "U32", 4], ["uint64", "U64", 8], ["float8_e4m3fn", "F8_E4M3", 1],
    ["float8_e5m2", "F8_E5M2", 1], ["float8_e4m3fnuz", "F8_E4M3FNUZ", 1], ["float8_e5m2fnuz", "F8_E5M2FNUZ", 1],
    ["float8_e8m0fnu", "F8_E8M0", 1], ["bfloat16", "BF16", 2], ["complex64", "C64", 8], ["bool", "BOOL", 1],
  ];
  test.each(untyped)("torch.%s over an UntypedStorage reads as %s", (dt, dtype, size) => {
    const { layout, bytes } = open([{ name: "t", dtype: dt, key: "0", numel: 4 * size, shape: [2, 2] }], { "0": iota(4 * size) });
    expect(layout.entries.get("t")).toMatchObject({ dtype, shape: [2, 2], byteLength: 4 * size });
    expect(bytes("t")).toEqual(iota(4 * size));
  });

  test("a dtype safetensors lacks is a clear error", () => {
    const spec = { name: "t", dtype: "complex128", key: "0", numel: 16, shape: [1] };
    expect(outcome(() => open([spec], { "0": iota(16) }))).toMatch(/^UnsupportedDtype: torch.complex128/);
  });
});

describe("views", () => {
  test("offsets, transposes, strides and broadcasts come out row-major", () => {
    // Storage: 24 float32 values 0..23 (as bytes of a Float32Array).
    const storage = new Uint8Array(new Float32Array(Array.from({ length: 24 }, (_, i) => i)).buffer);
    const { layout, bytes } = open(
      [
        { name: "rows", storage: "FloatStorage", key: "0", numel: 24, shape: [2, 4], offset: 8 },
        { name: "transposed", storage: "FloatStorage", key: "0", numel: 24, shape: [4, 6], stride: [1, 4] },
        { name: "strided", storage: "FloatStorage", key: "0", numel: 24, shape: [3, 2], stride: [8, 2], offset: 1 },
        { name: "broadcast", storage: "FloatStorage", key: "0", numel: 24, shape: [3, 2], stride: [0, 1], offset: 5 },
        { name: "scalar", storage: "FloatStorage", key: "0", numel: 24, shape: [], offset: 23 },
        { name: "empty", storage: "FloatStorage", key: "0", numel: 24, shape: [0, 5] },
      ],
      { "0": storage },
    );
    const values = (name: string) => Array.from(new Float32Array(bytes(name).slice().buffer));
    expect(values("rows")).toEqual([8, 9, 10, 11, 12, 13, 14, 15]);
    expect(layout.entries.get("rows")!.gather).toBeUndefined();
    expect(values("transposed")).toEqual([0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23]);
    expect(values("strided")).toEqual([1, 3, 9, 11, 17, 19]);
    expect(values("broadcast")).toEqual([5, 6, 5, 6, 5, 6]);
    expect(values("scalar")).toEqual([23]);
    expect(layout.entries.get("empty")).toMatchObject({ shape: [0, 5], byteLength: 0 });
  });

  test("a view reaching past its storage is refused", () => {
    const spec = { name: "t", storage: "FloatStorage", key: "0", numel: 4, shape: [2, 2], stride: [3, 1] };
    expect(outcome(() => open([spec], { "0": iota(16) }))).toMatch(/^InvalidPickle: tensor t reads past the end/);
  });

  test("a storage declared larger than its record is refused", () => {
    const spec = { name: "t", storage: "FloatStorage", key: "0", numel: 8, shape: [8] };
    expect(outcome(() => open([spec], { "0": iota(16) }))).toMatch(/^InvalidPickle: storage 0 is declared larger/);
  });

  test("a missing storage record is refused", () => {
    const spec = { name: "t", storage: "FloatStorage", key: "7", numel: 1, shape: [1] };
    expect(outcome(() => open([spec], { "0": iota(4) }))).toMatch(/^InvalidPickle: .* no record for storage 7/);
  });
});

describe("allowlist", () => {
  const zipOf = (p: Pickle) => memorySource(torchZip(p.bytes(), {}));

  test("a tensor subclass is refused by name", () => {
    const p = new Pickle().proto().global("torch._tensor", "_rebuild_from_type_v2").mark();
    p.global("torch._utils", "_rebuild_tensor_v2").global("mylib", "EvilTensor");
    expect(outcome(() => openPytorchLayout(zipOf(p)))).toBe("UnsafePickle: refused global mylib.EvilTensor");
  });

  test("persistent ids other than storages are refused", () => {
    const p = new Pickle().proto().mark().str("module").str("x").tuple().raw(0x51).stop();
    expect(outcome(() => openPytorchLayout(zipOf(p)))).toBe("UnsafePickle: refused persistent id that is not a storage");
  });

  test("BUILD on anything but a dict or tensor is refused", () => {
    const p = new Pickle().proto().global("torch", "float32").emptyDict().raw(0x62).stop();
    expect(outcome(() => openPytorchLayout(zipOf(p)))).toBe("UnsafePickle: refused BUILD of torch.float32 with dict");
  });

  test("calling an allowed non-callable is refused", () => {
    const p = new Pickle().proto().global("torch", "float32").emptyTuple().reduce().stop();
    expect(outcome(() => openPytorchLayout(zipOf(p)))).toBe("UnsafePickle: refused call of torch.float32");
  });

  test("Parameter and _rebuild_from_type_v2 unwrap to the tensor", () => {
    const p = new Pickle().proto().emptyDict().str("w");
    p.global("torch._tensor", "_rebuild_from_type_v2").mark();
    p.global("torch._utils", "_rebuild_parameter").global("torch.nn.parameter", "Parameter").mark();
    p.global("torch._utils", "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global("torch", "HalfStorage").str("0").str("cpu").int(2).tuple().raw(0x51);
    p.int(0).ints([2]).ints([1]).false().global("collections", "OrderedDict").emptyTuple().reduce().tuple().reduce();
    p.raw(0x88).global("collections", "OrderedDict").emptyTuple().reduce().tuple().emptyDict().tuple().reduce();
    p.raw(0x73).stop();
    const layout = openPytorchLayout(memorySource(torchZip(p.bytes(), { "0": iota(4) })));
    expect(layout.entries.get("w")).toMatchObject({ dtype: "F16", shape: [2], byteLength: 4 });
  });
});

describe("legacy (pre-zip) format", () => {
  test("a pickle longer than the first read, and storage views", () => {
    // 3,000 tensors make the pickle far longer than the 64 KiB read first, so the reader has to read on.
    const specs: TensorSpec[] = Array.from({ length: 3000 }, (_, i) => ({ name: `layer.${i}.w`, storage: "ShortStorage", key: "a", numel: 3000, shape: [1], offset: i }));
    specs.push({ name: "view", storage: "ShortStorage", key: "a", numel: 3000, shape: [2], view: ["a_view", 10, 2] });
    specs.push({ name: "odd", storage: "FloatStorage", key: "b", numel: 1, shape: [] });
    const shorts = new Uint8Array(new Int16Array(Array.from({ length: 3000 }, (_, i) => i)).buffer);
    const floats = new Uint8Array(new Float32Array([2.5]).buffer);
    const file = legacyFile(statePickle(specs, true), [["a", 3000, shorts], ["b", 1, floats]]);
    expect(file.length).toBeGreaterThan(1 << 16);
    const source = memorySource(file);
    const layout = openPytorchLayout(source);
    expect(layout.container).toBe("legacy");
    const read = (name: string) => {
      const e = layout.entries.get(name)!;
      return source.bytes(e.start, e.byteLength);
    };
    expect(new Int16Array(read("layer.2999.w").slice().buffer)).toEqual(Int16Array.of(2999));
    expect(new Int16Array(read("view").slice().buffer)).toEqual(Int16Array.of(10, 11));
    expect(new Float32Array(read("odd").slice().buffer)).toEqual(Float32Array.of(2.5));
  });

  test("a stream cut short in its storages or its pickles is refused", () => {
    const spec = { name: "t", storage: "FloatStorage", key: "k", numel: 4, shape: [4] };
    const file = legacyFile(statePickle([spec], true), [["k", 4, iota(16)]]);
    expect(outcome(() => openPytorchLayout(memorySource(file.subarray(0, file.length - 1))))).toMatch(/^InvalidPickle: .* truncated in storage k/);
    expect(outcome(() => openPytorchLayout(memorySource(file.subarray(0, 60))))).toBe("InvalidPickle: pickle is truncated");
    // The count before a storage must match what the pickle declared.
    const short = legacyFile(statePickle([spec], true), [["k", 3, iota(12)]]);
    expect(outcome(() => openPytorchLayout(memorySource(short)))).toMatch(/^InvalidPickle: storage k is declared larger/);
  });
});
