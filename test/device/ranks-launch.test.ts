/**
 * Ranks as launchers start them: separate processes, each told its rank only by its environment (the variables
 * mpirun, torchrun and srun set), all at once on one checkpoint. Each one's parts must be what an explicit rank
 * loads here. (No mpirun or torchrun on this machine: the variables are set as they set them.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { save } from "../../src/format/writer.ts";
import { run } from "../package/artefact.ts";
import { sha256 } from "../support/fixtures.ts";

const GPT2 = { "wte.weight": [128, 16], "h.0.attn.c_attn.weight": [16, 48], "h.0.attn.c_attn.bias": [48], "h.0.mlp.c_proj.weight": [64, 16], "h.0.mlp.c_proj.bias": [16], "ln_f.weight": [16] };

let dir: string;
let path: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tensormap-launch-"));
  path = join(dir, "model.safetensors");
  let x = 7;
  const noise = (n: number) => Float32Array.from({ length: n }, () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  await save(path, Object.fromEntries(Object.entries(GPT2).map(([name, shape]) => [name, { dtype: "F32" as const, shape, data: noise(shape.reduce((a, b) => a * b, 1)) }])));
});
afterAll(() => dir && rmSync(dir, { recursive: true, force: true }));

async function child(env: Record<string, string>): Promise<{ rank: { rank: number; worldSize: number; localRank: number; launcher: string }; parts: Record<string, string> }> {
  const script = "test/device/ranks-child.ts";
  const argv = runtime === "deno" ? ["run", "-A", script, path, "gpt2"] : [script, path, "gpt2"];
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RANK|WORLD_SIZE|LOCAL_RANK|OMPI_|PMI_|SLURM_)/.test(k)));
  const r = await run(process.execPath, argv, { env: { ...clean, ...env } });
  if (r.code !== 0) throw new Error(`rank exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

const launches: Array<[string, (rank: number, n: number) => Record<string, string>]> = [
  ["mpirun (Open MPI)", (r, n) => ({ OMPI_COMM_WORLD_RANK: `${r}`, OMPI_COMM_WORLD_SIZE: `${n}`, OMPI_COMM_WORLD_LOCAL_RANK: `${r}` })],
  ["torchrun", (r, n) => ({ RANK: `${r}`, WORLD_SIZE: `${n}`, LOCAL_RANK: `${r}`, LOCAL_WORLD_SIZE: `${n}` })],
  ["srun (Slurm)", (r, n) => ({ SLURM_PROCID: `${r}`, SLURM_NTASKS: `${n}`, SLURM_LOCALID: `${r}` })],
  ["MPICH (PMI)", (r, n) => ({ PMI_RANK: `${r}`, PMI_SIZE: `${n}` })],
];

test.skipIf(runtime === "node").each(launches)("%s: four processes at once, each loads the parts of the rank its environment names", async (_, envOf) => {
  const ranks = await Promise.all([0, 1, 2, 3].map((r) => child(envOf(r, 4))));
  for (let r = 0; r < 4; r++) {
    expect(ranks[r]!.rank).toMatchObject({ rank: r, worldSize: 4, localRank: r });
    using want = await loadToDevice(path, { device: "cpu", rank: r, worldSize: 4, plan: "gpt2" });
    expect(ranks[r]!.parts).toEqual(Object.fromEntries(want.keys().map((n) => [n, sha256(want.toHost(n))])));
  }
  // The ranks differ where the tensor is split and agree where it is whole.
  expect(new Set(ranks.map((r) => r.parts["h.0.attn.c_attn.weight"])).size).toBe(4);
  expect(new Set(ranks.map((r) => r.parts["ln_f.weight"])).size).toBe(1);
});
