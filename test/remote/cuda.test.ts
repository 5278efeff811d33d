/**
 * A remote checkpoint loaded onto a GPU through the checking libcudart stand-in: the pinned ring is filled by
 * ranged GETs written straight into its slots (ByteSource.read into a raw address), with no staging copy.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ffiUnavailable } from "../../ffi/runtime.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { buildFakeCudart, runUnderFakeCudart } from "../support/fakecudart.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { bigFile } from "./big-file.ts";
import { NGINX, startNginx, type Nginx } from "../support/servers.ts";

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
});
