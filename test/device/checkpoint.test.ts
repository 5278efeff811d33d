import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { checkpointFiles } from "../../src/device/checkpoint.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { fixture } from "../support/fixtures.ts";

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return (e as SafetensorsError).code;
  }
  return "no error";
};

test("a file is itself; a sharded directory is its shards in index order", () => {
  expect(checkpointFiles(fixture("safetensors/tiny-gpt2.safetensors"))).toEqual([fixture("safetensors/tiny-gpt2.safetensors")]);
  expect(checkpointFiles(fixture("sharded"))).toEqual([1, 2, 3].map((i) => fixture(`sharded/model-0000${i}-of-00003.safetensors`)));
});

test("directories without an index, and broken ones", () => {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-ckpt-"));
  try {
    expect(code(() => checkpointFiles(dir))).toBe("MissingShard");
    writeFileSync(join(dir, "b.safetensors"), "");
    writeFileSync(join(dir, "a.safetensors"), "");
    expect(checkpointFiles(dir)).toEqual([join(dir, "a.safetensors"), join(dir, "b.safetensors")]);
    writeFileSync(join(dir, "model.safetensors"), "");
    expect(checkpointFiles(dir)).toEqual([join(dir, "model.safetensors")]);
    const index = join(dir, "model.safetensors.index.json");
    writeFileSync(index, JSON.stringify({ weight_map: { x: "gone.safetensors" } }));
    expect(code(() => checkpointFiles(dir))).toBe("MissingShard");
    writeFileSync(index, JSON.stringify({ weight_map: { x: "../a.safetensors" } }));
    expect(code(() => checkpointFiles(dir))).toBe("InvalidIndex");
    writeFileSync(index, "{");
    expect(code(() => checkpointFiles(dir))).toBe("InvalidIndex");
    writeFileSync(index, JSON.stringify({ weight_map: { x: "a.safetensors", y: "a.safetensors", z: "b.safetensors" } }));
    expect(checkpointFiles(dir)).toEqual([join(dir, "a.safetensors"), join(dir, "b.safetensors")]);
  } finally {
    rmSync(dir, { recursive: true });
  }
  expect(code(() => checkpointFiles(join(dir, "gone")))).toBe("ENOENT");
});
