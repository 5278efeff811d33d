import { expect, test } from "vitest";
import { formatBytes } from "../../src/cli/format.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { cli, oneErrorLine } from "../support/cli.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { NGINX, startNginx } from "../support/servers.ts";

const SHARDED = fixture("sharded");

test("load --plan --rank --world-size reads this rank's parts and says how much of the checkpoint that is", async () => {
  using api = await loadToDevice(SHARDED, { device: "cpu", rank: 1, worldSize: 2, plan: "gpt2" });
  const split = [...api].filter(([, t]) => t.split).length;
  const whole = [...api].reduce((a, [, t]) => a + (t.fullShape!.reduce((n, d) => n * d, 1) * (t.byteLength / Math.max(1, t.shape.reduce((n, d) => n * d, 1)))), 0);
  const r = await cli("load", SHARDED, "--plan", "gpt2", "--rank", "1", "--world-size", "2");
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trimEnd().split("\n");
  expect(lines[0]).toMatch(new RegExp(`^${api.size} tensors, ${formatBytes(api.bytes).replace(".", "\\.")} in .* \\(device cpu\\)$`));
  expect(lines[1]).toBe("cpu requested");
  expect(lines[2]).toBe(`rank 1 of 2 (plan gpt2): ${split} tensors split, ${api.size - split} whole; ${formatBytes(api.bytes)} of ${formatBytes(whole)}`);
  expect(api.bytes).toBeLessThan(whole);
});

test("--json: this rank and every part, with the sha256 of its bytes", async () => {
  using api = await loadToDevice(SHARDED, { device: "cpu", rank: 0, worldSize: 2, plan: "gpt2" });
  const r = await cli("load", SHARDED, "--plan", "gpt2", "--rank", "0", "--world-size", "2", "--json");
  expect(r.code, r.stderr).toBe(0);
  const doc = JSON.parse(r.stdout);
  expect([doc.rank, doc.world_size, doc.plan, doc.device, doc.bytes]).toEqual([0, 2, "gpt2", "cpu", api.bytes]);
  expect(doc.tensors).toEqual(
    api.keys().map((name) => {
      const t = api.get(name);
      return { name, dtype: t.dtype, shape: t.shape, full_shape: t.fullShape, split: t.split, byte_length: t.byteLength, sha256: sha256(api.toHost(name)) };
    }),
  );
});

test.skipIf(!NGINX)(`load URL --plan --rank --world-size: a remote rank's parts are the local ones${NGINX ? "" : " (skipped: nginx is not installed)"}`, async () => {
  const nginx = await startNginx();
  try {
    const args = ["--plan", "gpt2", "--rank", "1", "--world-size", "2", "--json"];
    const [remote, local] = [await cli("load", `${nginx.url}/fixtures/sharded/`, ...args), await cli("load", SHARDED, ...args)];
    expect([remote.code, remote.stderr]).toEqual([0, ""]);
    const [got, want] = [JSON.parse(remote.stdout), JSON.parse(local.stdout)];
    expect([got.rank, got.world_size, got.bytes, got.tensors]).toEqual([1, 2, want.bytes, want.tensors]);
    expect(got.tensors.some((t: { split: { dim: number } | null }) => t.split?.dim === 1)).toBe(true);
  } finally {
    await nginx.stop();
  }
});

test("an uneven split is one error line; bad flags are usage errors", async () => {
  const uneven = await cli("load", SHARDED, "--plan", "gpt2", "--rank", "0", "--world-size", "3");
  expect(uneven.code).toBe(1);
  expect(oneErrorLine(uneven.stderr)).toMatch(/^error: UnevenSplit: h\.\d+\.attn\.c_attn\.(weight|bias): each of 3 blocks of dim \d of 16 does not divide among 3 ranks$/);
  const usage: Array<[string[], RegExp]> = [
    [["--rank", "1"], /--rank and --world-size need --plan llama\|gpt2/],
    [["--plan", "bert"], /--plan wants one of llama, gpt2, got 'bert'/],
    [["--plan", "gpt2", "--rank", "1.5"], /--rank wants a non-negative integer, got '1\.5'/],
    [["--plan", "gpt2", "--world-size", "2x"], /--world-size wants a non-negative integer, got '2x'/],
    [["--plan", "gpt2", "--backend", "read"], /--backend applies to whole loads/],
  ];
  for (const [args, message] of usage) {
    const r = await cli("load", SHARDED, ...args);
    expect(r.code, args.join(" ")).toBe(2);
    expect(r.stderr).toMatch(message);
  }
});
