import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { open } from "../../src/checkpoint/open.ts";
import { convert } from "../../src/convert/convert.ts";
import { openSharded } from "../../src/checkpoint/open.ts";

const fixtures = path.resolve(process.cwd(), "../shared/fixtures");
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const expected = (name: string) => JSON.parse(readFileSync(path.join(fixtures, "torch", name), "utf8")) as Record<string, { sha256: string; dtype: string; shape: number[] }>;

/** Bytes in every file under `root`, temporary ones included. */
function bytesOnDisk(root: string): number {
  return readdirSync(root, { recursive: true, encoding: "utf8" }).reduce((n, f) => {
    const st = statSync(path.join(root, f));
    return n + (st.isFile() ? st.size : 0);
  }, 0);
}

/**
 * Progress reports of the writing half, each with the bytes on disk at that moment. Reading a tensor is
 * reported just before it is written, so when tensors stream one at a time, every tensor reported
 * earlier is already on disk; a converter that reads everything first has written nothing yet.
 */
function streamingReports(watch: string): { onProgress: (done: number, total: number) => void; check: () => void } {
  const reports: Array<[done: number, onDisk: number]> = [];
  return {
    onProgress: (done, total) => {
      if (2 * done <= total) reports.push([done, bytesOnDisk(watch)]);
    },
    check: () => {
      expect(reports.length).toBeGreaterThan(2);
      for (let i = 1; i < reports.length; i++) expect(reports[i]![1], `report ${i}`).toBeGreaterThan(reports[i - 1]![0]);
    },
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "tensormap-convert-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("convert a file", () => {
  test("state-dict.pt → .safetensors: every tensor, views row-major, tied weights written separately", async () => {
    const out = path.join(dir, "model.safetensors");
    const progress: number[] = [];
    const result = await convert(path.join(fixtures, "torch/state-dict.pt"), out, { onProgress: (done, total) => progress.push(done / total) });
    const want = expected("state-dict.expected.json");
    expect(result).toMatchObject({ files: [out], tensors: Object.keys(want).length });
    expect(progress.at(-1)).toBe(1);
    using f = await open(out);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.keys()).toEqual(Object.keys(want).sort());
    for (const [name, e] of Object.entries(want)) {
      const t = f.tensor(name);
      expect([name, t.dtype, t.shape, sha(t.bytes)]).toEqual([name, e.dtype, e.shape, e.sha256]);
    }
    // Tied weights become two tensors with their own offsets.
    expect(f.info("lm_head.weight").dataOffsets).not.toEqual(f.info("embed.weight").dataOffsets);
    expect(readdirSync(dir)).toEqual(["model.safetensors"]);
  });

  test("tensors stream to disk one at a time instead of all being read first", async () => {
    const watch = streamingReports(dir);
    await convert(path.join(fixtures, "torch/state-dict.pt"), path.join(dir, "model.safetensors"), { onProgress: watch.onProgress });
    watch.check();
  });

  test("a training checkpoint writes its tensors under dotted names, and no other values", async () => {
    const out = path.join(dir, "ckpt.safetensors");
    const result = await convert(path.join(fixtures, "torch/training-checkpoint.pt"), out);
    // The values left out are named, and only they: every tensor was written.
    expect(result.dropped).toContain("epoch");
    expect(result.dropped.some((k) => k.includes("param_groups"))).toBe(true);
    using f = await open(out);
    expect(result.dropped.filter((k) => f.has(k))).toEqual([]);
    for (const [name, e] of Object.entries(expected("training-checkpoint.model.expected.json"))) expect(sha(f.tensor(name).bytes)).toBe(e.sha256);
    expect(f.keys()).toContain("optimizer.state.0.exp_avg_sq");
    expect(f.keys().some((k) => k.startsWith("epoch") || k.includes("param_groups"))).toBe(false);
  });

  test.each([["malicious/os-system.pt", "UnsafePickle"]])("%s is refused with %s and leaves no file", async (input, code) => {
    await expect(convert(path.join(fixtures, input), path.join(dir, "out.safetensors"))).rejects.toMatchObject({ code });
    expect(readdirSync(dir)).toEqual([]);
  });

  test("OUT may not be IN, nor a folder, nor in a folder that does not exist; nothing is written", async () => {
    const input = path.join(dir, "pytorch_model.bin");
    copyFileSync(path.join(fixtures, "torch/pytorch_model.bin"), input);
    const before = sha(readFileSync(input));
    await expect(convert(input, input)).rejects.toMatchObject({ code: "InvalidArgument", message: `${input} is ${input}: converting would replace the checkpoint it reads` });
    // The same file by another name.
    symlinkSync(input, path.join(dir, "link.bin"));
    await expect(convert(input, path.join(dir, "link.bin"))).rejects.toMatchObject({ code: "InvalidArgument" });
    expect(sha(readFileSync(input))).toBe(before);
    mkdirSync(path.join(dir, "folder"));
    await expect(convert(input, path.join(dir, "folder"))).rejects.toMatchObject({ code: "EISDIR" });
    const missing = path.join(dir, "no", "such", "out.safetensors");
    await expect(convert(input, missing)).rejects.toMatchObject({ code: "ENOENT", message: `cannot write ${missing}: folder ${path.dirname(missing)} does not exist` });
    expect(readdirSync(dir).sort()).toEqual(["folder", "link.bin", "pytorch_model.bin"]);
    expect(readdirSync(path.join(dir, "folder"))).toEqual([]);
  });
});

describe("convert pickle shards", () => {
  /** Two pickle shards of one model, with the index transformers writes. */
  function shardedInput(): string {
    const input = path.join(dir, "in");
    mkdirSync(input);
    copyFileSync(path.join(fixtures, "torch/pytorch_model.bin"), path.join(input, "pytorch_model-00001-of-00002.bin"));
    copyFileSync(path.join(fixtures, "torch/torch113-zip.pt"), path.join(input, "pytorch_model-00002-of-00002.bin"));
    const weightMap: Record<string, string> = {};
    for (const k of Object.keys(expected("pytorch_model.expected.json"))) weightMap[k] = "pytorch_model-00001-of-00002.bin";
    for (const k of Object.keys(expected("torch113.expected.json"))) weightMap[k] = "pytorch_model-00002-of-00002.bin";
    writeFileSync(path.join(input, "pytorch_model.bin.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    return input;
  }

  test("a folder of shards → HF-named safetensors shards with an index", async () => {
    const input = shardedInput();
    const out = path.join(dir, "out");
    const result = await convert(input, out, { maxShardSize: 100 });
    expect(result.files.at(-1)).toBe(path.join(out, "model.safetensors.index.json"));
    expect(readdirSync(out).sort()).toEqual([...result.files.map((f) => path.basename(f))].sort());
    expect(readdirSync(out).filter((f) => f.startsWith("."))).toEqual([]);
    using model = await openSharded(out);
    const want = { ...expected("pytorch_model.expected.json"), ...expected("torch113.expected.json") };
    expect(model.keys()).toEqual(Object.keys(want).sort());
    for (const [name, e] of Object.entries(want)) expect(sha(model.tensor(name).bytes), name).toBe(e.sha256);
    expect(model.files.length).toBeGreaterThan(1);
  });

  test("shards stream to disk one tensor at a time too", async () => {
    const input = shardedInput();
    // The shards are written in a hidden folder beside OUT, then swapped in: watch the folder holding both.
    const parent = path.join(dir, "parent");
    const out = path.join(parent, "out");
    const watch = streamingReports(parent);
    mkdirSync(out, { recursive: true });
    await convert(input, out, { maxShardSize: 100, onProgress: watch.onProgress });
    watch.check();
  });

  test("a new conversion replaces an earlier one's shards", async () => {
    const input = shardedInput();
    const out = path.join(dir, "out");
    await convert(input, out, { maxShardSize: 100 });
    const result = await convert(input, out);
    expect(readdirSync(out)).toEqual(["model.safetensors"]);
    expect(result.files).toEqual([path.join(out, "model.safetensors")]);
  });

  test("an index with a missing shard or a bad shard name is refused", async () => {
    const input = shardedInput();
    const index = path.join(input, "pytorch_model.bin.index.json");
    rmSync(path.join(input, "pytorch_model-00002-of-00002.bin"));
    await expect(convert(input, path.join(dir, "out"))).rejects.toMatchObject({ code: "MissingShard" });
    writeFileSync(index, JSON.stringify({ weight_map: { a: "../x.bin" } }));
    await expect(convert(index, path.join(dir, "out"))).rejects.toMatchObject({ code: "InvalidIndex", message: expect.stringContaining("not a file in the same folder") });
    expect(readdirSync(dir).includes("out")).toBe(false);
  });

  test("a refused shard is named in the error", async () => {
    const input = shardedInput();
    copyFileSync(path.join(fixtures, "malicious/os-system.pt"), path.join(input, "pytorch_model-00002-of-00002.bin"));
    await expect(convert(input, path.join(dir, "out"))).rejects.toMatchObject({ code: "UnsafePickle", message: expect.stringMatching(/^pytorch_model-00002-of-00002\.bin: /) });
    expect(readdirSync(dir).includes("out")).toBe(false);
  });

  test("the index file works as input too; one shard's worth is a single model.safetensors", async () => {
    const input = shardedInput();
    const out = path.join(dir, "out");
    const result = await convert(path.join(input, "pytorch_model.bin.index.json"), out);
    expect(result.files).toEqual([path.join(out, "model.safetensors")]);
  });

  test("an index that disagrees with its shards is refused and nothing is written", async () => {
    const input = shardedInput();
    const index = path.join(input, "pytorch_model.bin.index.json");
    const parsed = JSON.parse(readFileSync(index, "utf8"));
    parsed.weight_map["0.weight"] = "pytorch_model-00002-of-00002.bin";
    writeFileSync(index, JSON.stringify(parsed));
    const out = path.join(dir, "out");
    await expect(convert(input, out)).rejects.toMatchObject({ code: "InvalidIndex" });
    expect(readdirSync(dir).includes("out")).toBe(false);
  });
});
