/**
 * What a path means and what an index may be: every file read is checked before it is read, an index names
 * shards of its own format, and a checkpoint of thousands of shards never holds them all open.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { open, openCheckpoint, openSharded, resolveCheckpoint } from "../../src/checkpoint/open.ts";
import { saveSharded } from "../../src/checkpoint/save.ts";
import { MAX_INDEX_BYTES } from "../../src/format/sharded.ts";
import { tempName } from "../../src/io/commit.ts";
import { cli, oneErrorLine } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";
import { failure } from "../support/remote.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tensormap-index-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const INDEX = "model.safetensors.index.json";
const weightMap = (shard: string) => JSON.stringify({ weight_map: { a: shard } });

test("an index that is a FIFO is refused at once instead of blocking for ever", async () => {
  const index = join(dir, INDEX);
  execFileSync("mkfifo", [index]);
  expect((await failure(() => openCheckpoint(dir))).code).toBe("NotAFile");
});

test("an index that links to /dev/zero is refused before a byte is read", async () => {
  symlinkSync("/dev/zero", join(dir, INDEX));
  const e = await failure(() => openCheckpoint(join(dir, INDEX)));
  expect([e.code, e.message]).toEqual(["NotAFile", `${join(dir, INDEX)} is not a regular file`]);
});

test("a sparse index over the size limit is refused without reading it", async () => {
  const index = join(dir, INDEX);
  writeFileSync(index, "");
  truncateSync(index, 3e9);
  const before = process.memoryUsage().rss;
  const e = await failure(() => openCheckpoint(dir));
  expect(e.code).toBe("FileTooLarge");
  expect(e.message).toContain(String(MAX_INDEX_BYTES));
  // Reading it would have taken 3 GB; refusing it takes nothing worth measuring.
  expect(process.memoryUsage().rss - before).toBeLessThan(100 << 20);
});

test("an index that is not UTF-8 is InvalidIndex", async () => {
  writeFileSync(join(dir, INDEX), new Uint8Array([0x7b, 0xff, 0x7d]));
  expect((await failure(() => openCheckpoint(dir))).code).toBe("InvalidIndex");
});

test("metadata nested 100,000 deep is InvalidIndex, and inspect says so in one line", async () => {
  const shard = "model-00001-of-00001.safetensors";
  copyFileSync(fixture("safetensors/tiny-gpt2.safetensors"), join(dir, shard));
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  writeFileSync(join(dir, INDEX), `{"metadata":{"x":${deep}},"weight_map":{"wte.weight":"${shard}"}}`);
  const e = await failure(() => openCheckpoint(dir));
  expect([e.code, e.message]).toEqual(["InvalidIndex", `${join(dir, INDEX)}: "metadata" nests deeper than 32 levels`]);
  const r = await cli("inspect", dir);
  expect(r.code).toBe(1);
  expect(oneErrorLine(r.stderr)).toMatch(/^error: InvalidIndex: .*nests deeper/);
});

test("a safetensors index naming a pickle is refused, and a PyTorch index naming safetensors too", async () => {
  copyFileSync(fixture("torch/pytorch_model.bin"), join(dir, "pytorch_model.bin"));
  writeFileSync(join(dir, INDEX), weightMap("pytorch_model.bin"));
  const e = await failure(() => openCheckpoint(dir));
  expect([e.code, e.message]).toEqual(["InvalidIndex", `${INDEX} names "pytorch_model.bin", not a safetensors shard`]);

  rmSync(join(dir, INDEX));
  copyFileSync(fixture("safetensors/tiny-gpt2.safetensors"), join(dir, "model.safetensors"));
  writeFileSync(join(dir, "pytorch_model.bin.index.json"), weightMap("model.safetensors"));
  const p = await failure(() => openCheckpoint(join(dir, "pytorch_model.bin.index.json")));
  expect([p.code, p.message]).toEqual(["InvalidIndex", `pytorch_model.bin.index.json names "model.safetensors", not a pytorch shard`]);
});

test("an index of another name takes its format from its shards, which must agree", async () => {
  writeFileSync(join(dir, "a.safetensors"), "");
  writeFileSync(join(dir, "b.bin"), "");
  writeFileSync(join(dir, "weights.json"), JSON.stringify({ weight_map: { x: "a.safetensors", y: "b.bin" } }));
  expect((await failure(() => openCheckpoint(join(dir, "weights.json")))).code).toBe("InvalidIndex");
  writeFileSync(join(dir, "weights.json"), JSON.stringify({ weight_map: { x: "a.safetensors" } }));
  expect(resolveCheckpoint(join(dir, "weights.json"))).toMatchObject({ kind: "index", format: "safetensors" });
});

test("a shard whose content is not the index's format is InvalidIndex when it opens", async () => {
  // Named like safetensors, holding a pickle.
  copyFileSync(fixture("torch/pytorch_model.bin"), join(dir, "model-00001-of-00001.safetensors"));
  writeFileSync(join(dir, INDEX), weightMap("model-00001-of-00001.safetensors"));
  using model = await openCheckpoint(dir);
  const e = await failure(() => model.verify());
  expect([e.code, e.message]).toEqual(["InvalidIndex", `${join(dir, INDEX)} is a safetensors index, but model-00001-of-00001.safetensors is a pytorch file`]);
});

test("verify refuses shards whose tensors do not add up to the index's total_size", async () => {
  cpSync(fixture("sharded"), dir, { recursive: true });
  const index = JSON.parse(readFileSync(join(dir, INDEX), "utf8"));
  using good = await openCheckpoint(dir);
  expect(good.verify()).toBe(Object.keys(index.weight_map).length);
  index.metadata.total_size += 4;
  writeFileSync(join(dir, INDEX), JSON.stringify(index));
  using bad = await openCheckpoint(dir);
  expect((await failure(() => bad.verify())).message).toMatch(/gives total_size 20740, but its shards hold 20736 bytes/);
});

test("open() refuses a sharded checkpoint and names openCheckpoint; a folder of one file opens that file", async () => {
  expect((await failure(() => open(fixture("sharded")))).message).toMatch(/is a sharded checkpoint .*openCheckpoint/);
  copyFileSync(fixture("safetensors/tiny-gpt2.safetensors"), join(dir, "model.safetensors"));
  using file = await open(dir);
  expect(file.path).toBe(join(dir, "model.safetensors"));
});

test("verify of 1,000 shards leaves none of them open; a tensor asked for keeps its shard open", async () => {
  const shards = 1000;
  const tensors = new Map(Array.from({ length: shards }, (_, i) => [`t${i}`, { dtype: "F32" as const, shape: [1], data: new Float32Array([i]) }]));
  await saveSharded(dir, tensors, { maxShardSize: 4 });
  expect(readdirSync(dir).length).toBe(shards + 1);
  const fds = () => readdirSync("/proc/self/fd").length;
  // The read backend holds a descriptor per open shard: what ran out (EMFILE) near 20,000 shards.
  using model = await openCheckpoint(dir, { backend: "read" });
  const before = fds();
  expect(model.verify()).toBe(shards);
  expect(model.offsetKeys().length).toBe(shards);
  expect(fds() - before).toBeLessThanOrEqual(0);
  // Tensors asked for keep their shard open until close.
  expect(model.tensor("t7").typed()[0]).toBe(7);
  expect(fds() - before).toBe(1);
});

test("inspect of a folder of PyTorch shards lists their non-tensor values, as inspect of one shard does", async () => {
  const shards = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"];
  copyFileSync(fixture("torch/training-checkpoint.pt"), join(dir, shards[0]!));
  copyFileSync(fixture("torch/state-dict.pt"), join(dir, shards[1]!));
  const names = async (p: string) => {
    using f = await open(p);
    return f.offsetKeys();
  };
  const weight_map = Object.fromEntries([
    ...(await names(join(dir, shards[0]!))).map((n) => [n, shards[0]]),
    ...(await names(join(dir, shards[1]!))).map((n) => [n, shards[1]]),
  ]);
  writeFileSync(join(dir, "pytorch_model.bin.index.json"), JSON.stringify({ weight_map }));
  using one = await open(join(dir, shards[0]!));
  using model = await openSharded(dir);
  expect(one.leaves.size).toBeGreaterThan(0);
  expect([...model.leaves.keys()]).toEqual([...one.leaves.keys()]);
  const folder = JSON.parse((await cli("inspect", "--json", dir)).stdout);
  const file = JSON.parse((await cli("inspect", "--json", join(dir, shards[0]!))).stdout);
  expect(folder.values).toEqual(file.values);
});

test("a folder whose writer died between setting it aside and moving the new one in opens as the old checkpoint", async () => {
  const out = join(dir, "model");
  cpSync(fixture("sharded"), out, { recursive: true });
  // What a writer killed between its two renames leaves (no renameat2 exchange): the folder set aside, none in place.
  // The name is one this machine's writer would give it, with a process id no process can have.
  renameSync(out, tempName(out, "old").replace(/\.old-\d+-/, ".old-4194999-"));
  expect(existsSync(out)).toBe(false);
  using model = await openCheckpoint(out);
  expect(model.verify()).toBe(17);
  expect(readdirSync(dir)).toEqual(["model"]);
});

test("openSharded of one file keeps the handle it opened as its one shard, and close releases it", async () => {
  const fds = () => readdirSync("/proc/self/fd").length;
  const before = fds();
  const model = await openSharded(fixture("safetensors/tiny-gpt2.safetensors"), { backend: "read" });
  expect(model.tensor("wte.weight").bytes.byteLength).toBeGreaterThan(0);
  expect(fds() - before).toBe(1);
  model.close();
  expect(fds()).toBe(before);
});
