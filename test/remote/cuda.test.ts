/**
 * A remote checkpoint loaded onto a GPU through the checking libcudart stand-in: the pinned ring is filled by
 * ranged GETs written straight into its slots (ByteSource.read into a raw address), with no staging copy; a rank's
 * parts are its runs' GETs, packed into the slots.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ffiUnavailable } from "../../ffi/runtime.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { save } from "../../src/format/writer.ts";
import { buildFakeCudart, runUnderFakeCudart } from "../support/fakecudart.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { bigFile } from "./big-file.ts";
import { NGINX, startFaultProxy, startNginx, type Nginx } from "../support/servers.ts";
import { LLAMA_CONFIG, llamaTensors } from "../support/tp-models.ts";
import type { LoadSeen } from "../device/fakecudart-child.ts";

const whyNot = ffiUnavailable() ?? (!NGINX ? "nginx is not installed" : "");

describe.skipIf(whyNot !== "")(`remote loads onto CUDA through the stand-in${whyNot && ` (skipped: ${whyNot})`}`, () => {
  let nginx: Nginx;
  let dir: string;
  beforeAll(async () => {
    nginx = await startNginx();
    dir = mkdtempSync(join(tmpdir(), "tensormap-remote-cuda-"));
  });
  afterAll(async () => {
    await nginx?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("a sharded folder by URL: every tensor byte-identical on the device, 0 violations, 0 leaks", async () => {
    const local = await openCheckpoint(fixture("sharded"), { backend: "read" });
    const want = Object.fromEntries(local.keys().map((n) => [n, sha256(local.tensor(n).bytes)]));
    local.close();
    // Past the first 1 MiB read: the ring's slots are filled by ranged GETs of their own.
    const big = bigFile(3 << 20);
    writeFileSync(join(nginx.scratch, "big.safetensors"), big);
    want.big = sha256(big.subarray(big.length - (3 << 20)));
    const loads = [`${nginx.url}/fixtures/sharded/`, `${nginx.url}/scratch/big.safetensors`].map((path) => ({ path, options: { device: "cuda:0" }, release: "free" }));
    const spec = { loads };
    const r = await runUnderFakeCudart(buildFakeCudart(), dir, "test/device/fakecudart-child.ts", [JSON.stringify(spec)]);
    expect(r.stderr).toBe("");
    const seen: Array<{ ok: boolean; tensors: Array<{ name: string; sha256: string }> }> = JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads;
    expect(seen.map((l) => l.ok)).toEqual([true, true]);
    expect(Object.fromEntries(seen.flatMap((l) => l.tensors.map((t) => [t.name, t.sha256])))).toEqual(want);
    const report = r.reports[0]!;
    expect([report.violations, report.leaked_device_bytes, report.leaked_pinned_bytes, report.pageable_async_copies]).toEqual([0, 0, 0, 0]);
    expect(report.bytes_h2d).toBeGreaterThan(0);
  });

  test("a rank's parts by URL: copied back equal to its local cpu parts, its share fetched and not the file, 0 violations, 0 leaks", async () => {
    // Rows of 32 KiB in down_proj: a row-parallel part at 2 ranks is a run of 16 KiB every 32 KiB.
    const config = { ...LLAMA_CONFIG, hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 16384, vocab_size: 4096 };
    mkdirSync(join(nginx.scratch, "ranks"));
    const local = join(nginx.scratch, "ranks", "model.safetensors");
    await save(local, llamaTensors(1, config));
    writeFileSync(join(nginx.scratch, "ranks", "config.json"), JSON.stringify(config));
    const proxy = await startFaultProxy(nginx.url);
    try {
      const probe = 16 << 10;
      const options = (rank: number) => ({ device: "cuda:0", rank, worldSize: 2, plan: "llama" as const, slots: 2, slotBytes: 64 << 10, remote: { probeBytes: probe, gapBytes: 0 } });
      const loads = [0, 1].map((rank) => ({ path: `${proxy.url}/none/scratch/ranks/model.safetensors`, options: options(rank), release: "free" }));
      const r = await runUnderFakeCudart(buildFakeCudart(), dir, "test/device/fakecudart-child.ts", [JSON.stringify({ loads })]);
      expect(r.status, r.stderr).toBe(0);
      const seen = JSON.parse(r.stdout.trim().split("\n").at(-1)!).loads as LoadSeen[];
      let share = 0;
      for (const [rank, load] of seen.entries()) {
        if (!load.ok) throw new Error(`rank ${rank}: ${load.error.code}: ${load.error.message}`);
        using cpu = await loadToDevice(local, { device: "cpu", rank, worldSize: 2, plan: "llama" });
        expect(Object.fromEntries(load.tensors.map((t) => [t.name, [t.shape, t.sha256]]))).toEqual(Object.fromEntries(cpu.keys().map((n) => [n, [cpu.get(n).shape, sha256(cpu.toHost(n))]])));
        share += load.bytes;
      }
      const report = r.reports[0]!;
      expect([report.violations, report.leaked_device_bytes, report.leaked_pinned_bytes, report.pageable_async_copies]).toEqual([0, 0, 0, 0]);
      expect(report.bytes_h2d).toBe(share);
      // With no gap fetched (gapBytes 0), the ring reads each run exactly: the shares, two first reads and two
      // config.json fetches, and no more.
      const fetched = [...proxy.sent].filter(([k]) => k.startsWith("none /scratch/ranks/")).reduce((a, [, n]) => a + n, 0);
      const small = statSync(join(nginx.scratch, "ranks", "config.json")).size;
      expect(fetched).toBeGreaterThanOrEqual(share);
      expect(fetched).toBeLessThanOrEqual(share + 2 * (probe + small));
    } finally {
      await proxy.stop();
    }
  });
});
