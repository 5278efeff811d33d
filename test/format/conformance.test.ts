/**
 * Runs every conformance vector through the header parser in memory and through `open()` on a real file:
 * each must fail with the reference's error name as `code`, or succeed with exactly the expected tensors,
 * bytes and metadata.
 */
import { Buffer } from "node:buffer";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { parseHeader, type Header } from "../../src/format/header.ts";
import { open } from "../../src/checkpoint/open.ts";
import { buildFile, pattern, VECTORS, type Vector } from "./conformance.vectors.ts";

const dir = mkdtempSync(join(tmpdir(), "tensormap-conformance-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The error a call throws, or undefined when it returns. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

function expectCode(err: unknown, v: Vector) {
  expect(err, `expected ${v.expect}: ${v.why}`).toBeInstanceOf(SafetensorsError);
  expect((err as SafetensorsError).code, v.why).toBe(v.expect);
}

/** The data buffer as the vector wrote it (the bytes a tensor reads come from here). */
const dataOf = (v: Vector) => (typeof v.data === "number" ? pattern(v.data) : (v.data ?? new Uint8Array()));

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function checkHeader(h: Header, v: Vector) {
  const want = v.tensors!;
  expect([...h.tensors.keys()].sort(byName)).toEqual(want.map(([n]) => n).sort(byName));
  for (const [name, dtype, shape, offsets] of want) {
    const info = h.tensors.get(name)!;
    expect(info.dtype).toBe(dtype);
    if (shape) expect(info.shape).toEqual(shape);
    expect(info.dataOffsets).toEqual(offsets);
    expect(info.byteLength).toBe(offsets[1] - offsets[0]);
  }
  // File order is offset order.
  const starts = h.order.map((n) => h.tensors.get(n)!.dataOffsets);
  expect(starts).toEqual([...starts].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
  expect(new Set(h.order)).toEqual(new Set(h.tensors.keys()));
  checkMetadata(h.metadata, v);
}

function checkMetadata(md: Record<string, string> | null, v: Vector) {
  if (v.metadata === null) {
    expect(md).toBeNull();
    return;
  }
  expect(md).not.toBeNull();
  // A record without a prototype: `__proto__` and friends are plain keys, nothing is inherited.
  expect(Object.getPrototypeOf(md)).toBeNull();
  expect(Object.entries(md!).sort(([a], [b]) => byName(a, b))).toEqual([...v.metadata!].sort(([a], [b]) => byName(a, b)));
}

describe("conformance with safetensors 0.8: parseHeader", () => {
  test("has a vector for every reference error and for acceptance", () => {
    const codes = new Set(VECTORS.map((v) => v.expect));
    for (const c of ["ok", "HeaderTooSmall", "HeaderTooLarge", "InvalidHeaderLength", "InvalidHeader", "InvalidHeaderDeserialization", "InvalidOffset", "TensorInvalidInfo", "ValidationOverflow", "MisalignedSlice", "MetadataIncompleteBuffer"]) {
      expect(codes).toContain(c);
    }
    expect(VECTORS.length).toBeGreaterThanOrEqual(120);
  });

  test.each(VECTORS.map((v) => [v.name, v] as const))("%s", (_name, v) => {
    const file = buildFile(v);
    if (v.expect === "ok") checkHeader(parseHeader(file, file.byteLength), v);
    else expectCode(thrown(() => parseHeader(file, file.byteLength)), v);
  });

  test.each(VECTORS.filter((v) => v.expect !== "HeaderTooSmall").map((v) => [v.name, v] as const))(
    "%s (given only the first 8 + N bytes)",
    (_name, v) => {
      // open() hands the parser just the header bytes; the answer must not depend on seeing the data.
      const file = buildFile(v);
      const n = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
      const head = n <= file.byteLength - 8 ? file.subarray(0, 8 + n) : file;
      if (v.expect === "ok") checkHeader(parseHeader(head, file.byteLength), v);
      else expectCode(thrown(() => parseHeader(head, file.byteLength)), v);
    },
  );
});

describe.each(["read", "auto"] as const)("conformance with safetensors 0.8: open(path, { backend: %j })", (backend) => {
  test.each(VECTORS.map((v, i) => [v.name, v, i] as const))("%s", async (_name, v, i) => {
    const path = join(dir, `${backend}-${i}.safetensors`);
    writeFileSync(path, buildFile(v));
    let err: unknown;
    const file = await open(path, { backend }).catch((e: unknown) => {
      err = e;
      return undefined;
    });
    if (v.expect !== "ok") {
      file?.close();
      expectCode(err, v);
      return;
    }
    expect(err).toBeUndefined();
    try {
      const data = dataOf(v);
      expect(file!.keys()).toEqual(v.tensors!.map(([n]) => n).sort(byName));
      for (const [name, dtype, shape, [s, e]] of v.tensors!) {
        expect(file!.has(name)).toBe(true);
        const info = file!.info(name);
        expect(info.dtype).toBe(dtype);
        expect(info.dataOffsets).toEqual([s, e]);
        const t = file!.tensor(name);
        expect(t.name).toBe(name);
        expect(t.dtype).toBe(dtype);
        if (shape) expect([...t.shape]).toEqual(shape);
        expect(t.bytes).toEqual(data.subarray(s, e));
      }
      checkMetadata(file!.metadata, v);
    } finally {
      file!.close();
    }
  });
});

describe("error messages do not show what a file holds", () => {
  // Files that are no checkpoint, reached through a symlinked shard: their first 8 bytes read as a length.
  const NOT_CHECKPOINTS = [
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
    '{"token": "hf_s3cr3t"}',
    "\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0",
  ];

  test.each(NOT_CHECKPOINTS.map((text, i) => [text.slice(0, 8), text, i] as const))("%j…", async (_head, text, i) => {
    const target = join(dir, `secret-${i}`);
    const link = join(dir, `linked-${i}.safetensors`);
    writeFileSync(target, text, "latin1");
    symlinkSync(target, link);
    const bytes = Buffer.from(text, "latin1");
    const asLength = bytes.readBigUInt64LE(0);
    for (const backend of ["read", "auto"] as const) {
      const err = await open(link, { backend }).then((f) => f.close(), (e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      const { code, message } = err as SafetensorsError;
      expect(code).toBe("HeaderTooLarge");
      expect(message).not.toMatch(/\n/);
      // Neither the bytes as a number (decimal or hex) nor any run of the text.
      expect(message).not.toContain(String(asLength));
      expect(message).not.toContain(asLength.toString(16));
      for (let at = 0; at + 4 <= text.length; at++) expect(message).not.toContain(text.slice(at, at + 4));
    }
  });

  test("a length under the limit is stated, since it cannot spell text", () => {
    const file = buildFile({ name: "", why: "", header: "{}", n: 99_999_999n, expect: "InvalidHeaderLength" });
    const err = thrown(() => parseHeader(file, file.byteLength)) as SafetensorsError;
    expect(err.code).toBe("InvalidHeaderLength");
    expect(err.message).toContain("99999999");
  });

  const long = "x".repeat(1_000_000);
  test.each([
    ["an unknown dtype", `{"a":{"dtype":"${long}","shape":[],"data_offsets":[0,0]}}`, "InvalidHeaderDeserialization"],
    ["a bad entry under a long name", `{"${long}":{"dtype":"F32"}}`, "InvalidHeaderDeserialization"],
    ["a metadata value that is no string, under a long key", `{"__metadata__":{"${long}":1}}`, "InvalidHeaderDeserialization"],
    ["a long name at a wrong offset", `{"${long}":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, "InvalidOffset"],
    ["a long name whose size is wrong", `{"${long}":{"dtype":"U8","shape":[2],"data_offsets":[0,1]}}`, "TensorInvalidInfo"],
    ["a long shape of sub-byte elements", `{"a":{"dtype":"F4","shape":[${"1,".repeat(100_000)}3],"data_offsets":[0,2]}}`, "MisalignedSlice"],
  ])("%s: one short line", (_what, header, code) => {
    const file = buildFile({ name: "", why: "", header, data: 1, expect: code as Vector["expect"] });
    const err = thrown(() => parseHeader(file, file.byteLength)) as SafetensorsError;
    expect(err.code).toBe(code);
    expect(err.message).not.toMatch(/\n/);
    expect(err.message.length).toBeLessThan(200);
  });
});
