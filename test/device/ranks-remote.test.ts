/**
 * Tensor-parallel loads of remote checkpoints (nginx on loopback, a counting proxy in front of it): each rank's parts
 * equal the local load's byte for byte, and the bytes fetched are the rank's share, the replicated tensors and the
 * headers, never the whole file. config.json comes from the URL's folder, for http(s), hf:// and s3:// alike.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ffiUnavailable } from "../../ffi/runtime.ts";
import { saveSharded } from "../../src/checkpoint/save.ts";
import { loadToDevice, type DeviceLoadOptions } from "../../src/device/load.ts";
import type { HostTensor } from "../../src/device/tensors.ts";
import { splitRuns } from "../../src/device/tp-plan.ts";
import { DTYPES } from "../../src/format/dtypes.ts";
import { save } from "../../src/format/writer.ts";
import { buildFakeCudart, runUnderFakeCudart } from "../support/fakecudart.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { withEnv } from "../support/env.ts";
import { NGINX, startFaultProxy, startNginx, type FaultProxy, type Nginx } from "../support/servers.ts";
import { GPT2_CONFIG, gpt2Tensors, LLAMA_CONFIG, llamaTensors } from "../support/tp-models.ts";
import type { ChildSpec, LoadSeen } from "./fakecudart-child.ts";

/** Why the CUDA stand-in cannot load here (no FFI: Node 20), or "". */
const NO_FFI = ffiUnavailable() ?? "";

/** A first read just past the header: what the probe brings of the tensors is not what the bound rests on. */
const PROBE = 16 << 10;
const REMOTE = { remote: { probeBytes: PROBE } } satisfies DeviceLoadOptions;
/** Runs at most a page apart are fetched as one GET: the gap is each run's slack. */
const GAP = 4096;
/** Rows of 32 KiB in down_proj: a row-parallel part at 4 ranks is a run of 8 KiB every 32 KiB, one GET each. */
const WIDE = { ...LLAMA_CONFIG, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 16384, vocab_size: 4096 };

/** What the proxy sent for paths under `prefix`: requests and body bytes. */
function counted(proxy: FaultProxy, prefix: string): { requests: number; bytes: number } {
  let requests = 0;
  let bytes = 0;
  for (const [key, n] of proxy.requests) if (key.startsWith(`none ${prefix}`)) requests += n;
  for (const [key, n] of proxy.sent) if (key.startsWith(`none ${prefix}`)) bytes += n;
  return { requests, bytes };
}

/** Each tensor's part as the load gave it (shape, split and the bytes' sha256), the bytes in all, and how many runs they are. */
async function parts(path: string, opts: DeviceLoadOptions) {
  using w = await loadToDevice(path, { ...REMOTE, ...opts, device: "cpu" });
  const out = new Map([...w].map(([name, t]) => [name, { shape: t.shape, split: t.split, sha256: sha256((t as HostTensor).bytes) }]));
  const runs = [...w].reduce((a, [name, t]) => a + splitRuns(name, t.fullShape!, DTYPES.get(t.dtype)!.bits, t.split ?? null).runs.length, 0);
  return { parts: out, share: w.bytes, runs };
}

describe.skipIf(!NGINX)(`remote tensor-parallel loads${NGINX ? "" : " (skipped: nginx is not installed)"}`, () => {
  let nginx: Nginx;
  let proxy: FaultProxy;
  const local = { llama: "", gpt2: "" };
  const files = { llama: [] as string[], gpt2: [] as string[] };
  beforeAll(async () => {
    nginx = await startNginx();
    proxy = await startFaultProxy(nginx.url);
    // Llama in one file of about 7 MiB; GPT-2 in shards, an index naming them.
    local.llama = join(nginx.scratch, "llama", "model.safetensors");
    mkdirSync(join(nginx.scratch, "llama"));
    await save(local.llama, llamaTensors(1, WIDE));
    writeFileSync(join(nginx.scratch, "llama", "config.json"), JSON.stringify(WIDE));
    local.gpt2 = join(nginx.scratch, "gpt2");
    const written = await saveSharded(local.gpt2, gpt2Tensors(), { maxShardSize: 400_000 });
    writeFileSync(join(local.gpt2, "config.json"), JSON.stringify(GPT2_CONFIG));
    files.llama = [local.llama];
    files.gpt2 = written.filter((f) => f.endsWith(".safetensors"));
  });
  afterAll(async () => {
    await proxy?.stop();
    await nginx?.stop();
  });

  const url = (plan: "llama" | "gpt2") => `${proxy.url}/none/scratch/${plan === "llama" ? "llama/model.safetensors" : "gpt2/"}`;

  describe.each([2, 4])("world size %i", (worldSize) => {
    test.each(["llama", "gpt2"] as const)("%s: each rank's parts equal the local ones, and it fetches its share, not the file", async (plan) => {
      const fileBytes = files[plan].reduce((a, f) => a + statSync(f).size, 0);
      const small = [join(nginx.scratch, plan, "config.json"), ...(plan === "gpt2" ? [join(local.gpt2, "model.safetensors.index.json")] : [])].reduce((a, f) => a + statSync(f).size, 0);
      const lines: string[] = [];
      for (let rank = 0; rank < worldSize; rank++) {
        const before = counted(proxy, `/scratch/${plan}/`);
        // No config given: the load finds config.json beside the URL (the llama plan's K/V heads need it).
        const remote = await parts(url(plan), { rank, worldSize, plan });
        const after = counted(proxy, `/scratch/${plan}/`);
        const fetched = after.bytes - before.bytes;
        const want = await parts(local[plan], { rank, worldSize, plan });
        expect([...remote.parts.keys()]).toEqual([...want.parts.keys()]);
        for (const [name, p] of want.parts) expect({ name, ...remote.parts.get(name)! }).toEqual({ name, ...p });
        // Every byte of the share came over the wire once at least, and nothing else but a gap of at most a page
        // per run, each file's first read (its header), config.json and the index.
        const allowed = remote.share + remote.runs * GAP + files[plan].length * PROBE + small;
        lines.push(`${plan} rank ${rank}/${worldSize}: fetched ${fetched} (${((100 * fetched) / fileBytes).toFixed(1)}% of ${fileBytes}) in ${after.requests - before.requests} requests; share ${remote.share} in ${remote.runs} runs, allowed ${allowed}`);
        expect(fetched, lines.at(-1)).toBeGreaterThanOrEqual(remote.share);
        expect(fetched, lines.at(-1)).toBeLessThanOrEqual(allowed);
        expect(fetched, lines.at(-1)).toBeLessThan(fileBytes);
        // Wide rows: no gap is merged but o_proj's, so the share is nearly all that comes.
        if (plan === "llama") expect(fetched, lines.at(-1)).toBeLessThan(remote.share * 1.05 + PROBE + small);
      }
      console.log(lines.join("\n"));
    });
  });

  test("runs close together are one ranged GET: a rank at world size 1 fetches the file in one GET past its first read", async () => {
    const before = counted(proxy, "/scratch/llama/");
    await parts(url("llama"), { rank: 0, worldSize: 1, plan: "llama" });
    const after = counted(proxy, "/scratch/llama/");
    // The first read, config.json (its own first read holds it), and the tensors: one part (8 MiB) is enough.
    expect(after.requests - before.requests).toBe(3);
  });

  test.each([4, 8])("row-parallel parts at world size %i: gapBytes 1 MiB fetches them in far fewer GETs than the default's one per row, the parts the same", async (worldSize) => {
    const rank = 1;
    const want = await parts(local.llama, { rank, worldSize, plan: "llama" });
    const load = async (gapBytes?: number) => {
      const before = counted(proxy, "/scratch/llama/");
      const got = await parts(url("llama"), { rank, worldSize, plan: "llama", remote: { probeBytes: PROBE, gapBytes } });
      const after = counted(proxy, "/scratch/llama/");
      expect([...got.parts]).toEqual([...want.parts]);
      return { requests: after.requests - before.requests, bytes: after.bytes - before.bytes, share: got.share, runs: got.runs };
    };
    const byDefault = await load();
    const wide = await load(1 << 20);
    console.log(`llama rank ${rank}/${worldSize}: default ${byDefault.requests} GETs, ${byDefault.bytes} bytes; gapBytes 1 MiB ${wide.requests} GETs, ${wide.bytes} bytes; share ${byDefault.share} in ${byDefault.runs} runs`);
    // down_proj's rows are 32 KiB apart: by default a GET each (64 per layer), with 1 MiB all of them one.
    expect(byDefault.requests).toBeGreaterThan(64);
    expect(wide.requests * 8).toBeLessThan(byDefault.requests);
    // The default keeps the bound; the wider gap fetches the rows' gaps too.
    expect(byDefault.bytes).toBeLessThanOrEqual(byDefault.share + byDefault.runs * GAP + PROBE + statSync(join(nginx.scratch, "llama", "config.json")).size);
    expect(wide.bytes).toBeGreaterThan(byDefault.bytes);
  });

  test.skipIf(NO_FFI !== "")(`row-parallel parts onto CUDA through the ring (the checking stand-in): gapBytes applies there too, the parts copied back the cpu ones${NO_FFI && ` (skipped: ${NO_FFI})`}`, async () => {
    const [rank, worldSize] = [1, 4];
    const want = await parts(local.llama, { rank, worldSize, plan: "llama" });
    const lib = buildFakeCudart();
    const requests: number[] = [];
    for (const gapBytes of [undefined, 1 << 20]) {
      const before = counted(proxy, "/scratch/llama/");
      // Small slots: runs and merged reads straddle them.
      const options = { device: "cuda:0", rank, worldSize, plan: "llama" as const, slots: 2, slotBytes: 16 << 10, remote: { probeBytes: PROBE, gapBytes } };
      const r = await runUnderFakeCudart(lib, nginx.scratch, "test/device/fakecudart-child.ts", [JSON.stringify({ loads: [{ path: url("llama"), release: "free", options }] } satisfies ChildSpec)]);
      expect(r.status, r.stderr).toBe(0);
      expect([r.reports.length, r.reports[0]?.violations, r.reports[0]?.leaked_device_bytes]).toEqual([1, 0, 0]);
      const [load] = JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads as LoadSeen[];
      if (!load!.ok) throw new Error(`${load!.error.code}: ${load!.error.message}`);
      expect(new Map(load!.tensors.map((t) => [t.name, { shape: t.shape, split: t.split, sha256: t.sha256 }]))).toEqual(want.parts);
      requests.push(counted(proxy, "/scratch/llama/").requests - before.requests);
    }
    console.log(`llama rank ${rank}/${worldSize} onto CUDA: default ${requests[0]} GETs, gapBytes 1 MiB ${requests[1]}`);
    expect(requests[1]! * 8).toBeLessThan(requests[0]!);
  });

  test("a bad gapBytes is InvalidArgument before any request", async () => {
    const before = counted(proxy, "/scratch/llama/");
    const e = await loadToDevice(url("llama"), { device: "cpu", rank: 0, worldSize: 2, plan: "llama", remote: { gapBytes: -1 } }).then(() => undefined, (err: unknown) => err as { code: string; message: string });
    expect([e?.code, e?.message]).toEqual(["InvalidArgument", "remote option gapBytes must be an integer ≥ 0, got -1"]);
    expect(counted(proxy, "/scratch/llama/").requests).toBe(before.requests);
  });

  test.each([
    ["hf://o/r", () => ({ HF_ENDPOINT: nginx.url, HF_TOKEN: "hf_test" })],
    ["s3://s3b/sharded/", () => ({ AWS_ENDPOINT_URL_S3: nginx.url, AWS_ACCESS_KEY_ID: "AKIDTEST", AWS_SECRET_ACCESS_KEY: "secret", AWS_SESSION_TOKEN: "tok", AWS_REGION: "eu-west-1" })],
  ])("%s: the parts, fetched past a first read of 1 KiB, equal the local ones (no config.json there: none is needed for gpt2)", async (address, vars) => {
    await withEnv(vars(), async () => {
      for (let rank = 0; rank < 2; rank++) {
        const remote = await parts(address, { rank, worldSize: 2, plan: "gpt2", remote: { probeBytes: 1024 } });
        const want = await parts(fixture("sharded"), { rank, worldSize: 2, plan: "gpt2" });
        expect([...remote.parts]).toEqual([...want.parts]);
        expect([...remote.parts.values()].some((p) => p.split?.dim === 1)).toBe(true);
      }
    });
  });

  test("a config.json that is not JSON is InvalidArgument naming its URL; a given config is used instead of fetching one", async () => {
    mkdirSync(join(nginx.scratch, "bad"));
    await save(join(nginx.scratch, "bad", "model.safetensors"), llamaTensors(1, WIDE));
    writeFileSync(join(nginx.scratch, "bad", "config.json"), "{ not json");
    const bad = `${nginx.url}/scratch/bad/model.safetensors`;
    const e = await loadToDevice(bad, { device: "cpu", rank: 0, worldSize: 2, plan: "llama" }).then(() => undefined, (err: unknown) => err as { code: string; message: string });
    expect([e?.code, e?.message]).toEqual(["InvalidArgument", expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/scratch\/bad\/config\.json is not JSON: /)]);
    using w = await loadToDevice(bad, { device: "cpu", rank: 0, worldSize: 2, plan: "llama", config: WIDE });
    expect(w.get("model.layers.0.self_attn.k_proj.weight").split).toEqual({ dim: 0, start: 0, end: 8 });
  });
});
