/**
 * A real launcher: Open MPI's `mpirun -np 4` starts four processes of this runtime (test/device/ranks-child.ts),
 * each told its rank only by the variables mpirun sets, each loading its parts of a checkpoint with `plan` and
 * printing a sha256 per part. Every part is checked against a reference cut here from the full tensor as read from
 * the file, under the rules of the rank-slices issue written out again (not through the planner), so a planner bug
 * shows up as a wrong hash.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { save } from "../../src/format/writer.ts";
import { sha256 } from "../support/fixtures.ts";
import { GPT2_CONFIG, gpt2Tensors, LLAMA_CONFIG, llamaTensors } from "../support/tp-models.ts";
import { childArgv, removeTranspiled } from "../io/child.ts";

const MPIRUN = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].find((p) => spawnSync(p, ["--version"]).status === 0);
const whyNot = MPIRUN ? "" : "mpirun is not installed (apt-get install -y openmpi-bin)";
const WORLD = 4;
const ELEM_BYTES: Record<string, number> = { BF16: 2, F16: 2, F32: 4 };

interface FileTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** The file's tensors, read straight from its header (u64 length, JSON, data), not through tensormap's reader. */
function readTensors(path: string): Map<string, FileTensor> {
  const file = new Uint8Array(readFileSync(path));
  const n = Number(new DataView(file.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, FileTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name !== "__metadata__") out.set(name, { dtype: e.dtype, shape: e.shape, bytes: file.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
  }
  return out;
}

/** What a rank keeps of one dimension: `[start, end)` pieces of it, concatenated in order (torch.cat of narrows). */
type Cut = { dim: number; pieces: Array<[number, number]> } | null;

/** `narrow` of each piece along `dim`, concatenated along `dim`, row-major: what torch would hold. */
function narrow(t: FileTensor, cut: Cut): Uint8Array {
  if (!cut) return t.bytes;
  const inner = t.shape.slice(cut.dim + 1).reduce((a, b) => a * b, ELEM_BYTES[t.dtype]!);
  const outer = t.shape.slice(0, cut.dim).reduce((a, b) => a * b, 1);
  const row = t.shape[cut.dim]! * inner;
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < outer; o++) for (const [s, e] of cut.pieces) chunks.push(t.bytes.subarray(o * row + s * inner, o * row + e * inner));
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  chunks.reduce((at, c) => (out.set(c, at), at + c.length), 0);
  return out;
}

const evenly = (dim: number, n: number, rank: number): Cut => ({ dim, pieces: [[(rank * n) / WORLD, ((rank + 1) * n) / WORLD]] });

/** The vocabulary padded to a multiple of 64 and divided; a rank keeps only the real rows of its share. */
function vocabulary(rows: number, rank: number): Cut {
  const per = Math.ceil(rows / 64) * 64 / WORLD;
  return { dim: 0, pieces: [[Math.min(rank * per, rows), Math.min((rank + 1) * per, rows)]] };
}

/** vLLM's Llama rules: column parallel on dim 0, row parallel on dim 1, K/V heads replicated past their count. */
function llamaCut(name: string, shape: number[], rank: number): Cut {
  if (/\.(q_proj|gate_proj|up_proj)\.weight$/.test(name)) return evenly(0, shape[0]!, rank);
  if (/\.(o_proj|down_proj)\.weight$/.test(name)) return evenly(1, shape[1]!, rank);
  if (/(embed_tokens|lm_head)\.weight$/.test(name)) return vocabulary(shape[0]!, rank);
  if (/\.(k_proj|v_proj)\.weight$/.test(name)) {
    const kvHeads = LLAMA_CONFIG.num_key_value_heads;
    const headDim = LLAMA_CONFIG.hidden_size / LLAMA_CONFIG.num_attention_heads;
    if (WORLD < kvHeads) return evenly(0, shape[0]!, rank);
    const head = Math.floor(rank / (WORLD / kvHeads));
    return { dim: 0, pieces: [[head * headDim, (head + 1) * headDim]] };
  }
  return null;
}

/** GPT-2's Conv1D `[in, out]` rules: q, k, v thirds of c_attn each split, c_proj row parallel, biases by output. */
function gpt2Cut(name: string, shape: number[], rank: number): Cut {
  const out = name.endsWith(".weight") ? 1 : 0;
  if (/\.attn\.c_attn\./.test(name)) {
    const third = shape[out]! / 3;
    const [s, e] = [(rank * third) / WORLD, ((rank + 1) * third) / WORLD];
    return { dim: out, pieces: [0, 1, 2].map((p): [number, number] => [p * third + s, p * third + e]) };
  }
  if (/\.mlp\.c_fc\./.test(name)) return evenly(out, shape[out]!, rank);
  if (/\.c_proj\.weight$/.test(name)) return evenly(0, shape[0]!, rank);
  if (name === "wte.weight") return vocabulary(shape[0]!, rank);
  return null;
}

interface RankOutput {
  rank: { rank: number; worldSize: number; localRank: number; launcher: string };
  parts: Record<string, string>;
}

/** Runs `mpirun -np 4` on the child; returns each rank's printed JSON by the rank Open MPI gave the process. */
async function mpirun(folder: string, plan: string, outDir: string): Promise<Map<number, RankOutput>> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|OMPI_|PMI_|PMIX_|SLURM_)/.test(k)));
  // Loopback only, no binding (2 cores, 4 ranks), and mpirun's refusal to run as root lifted for containers.
  const flags = ["-np", `${WORLD}`, "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo", "--output-filename", outDir];
  const argv = [...flags, process.execPath, ...(await childArgv("test/device/ranks-child.ts", [folder, plan]))];
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const p = spawn(MPIRUN!, argv, { env: { ...clean, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1" }, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("close", (c) => resolve({ code: c, stderr: err }));
  });
  expect(code, stderr).toBe(0);
  // --output-filename DIR writes DIR/<job>/rank.<R>/stdout: the rank Open MPI launched, whatever the child says.
  const out = new Map<number, RankOutput>();
  for (const entry of readdirSync(outDir, { recursive: true }) as string[]) {
    const m = /(?:^|\/)rank\.(\d+)\/stdout$/.exec(entry);
    if (m) out.set(Number(m[1]), JSON.parse(readFileSync(join(outDir, entry), "utf8").trim().split("\n").at(-1)!));
  }
  return out;
}

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tensormap-mpirun-"));
  for (const [model, tensors, config] of [["llama", llamaTensors(2), LLAMA_CONFIG], ["gpt2", gpt2Tensors(), GPT2_CONFIG]] as const) {
    mkdirSync(join(dir, model));
    await save(join(dir, model, "model.safetensors"), tensors);
    writeFileSync(join(dir, model, "config.json"), JSON.stringify(config));
  }
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  removeTranspiled();
});

describe.skipIf(whyNot !== "")(`mpirun -np ${WORLD} (Open MPI)${whyNot && ` (skipped: ${whyNot})`}`, () => {
  test.each([
    ["llama", llamaCut],
    ["gpt2", gpt2Cut],
  ] as const)("%s: each rank finds its rank in Open MPI's variables and holds the narrows of the full tensors", async (plan, cut) => {
    const ranks = await mpirun(join(dir, plan), plan, join(dir, `out-${plan}`));
    expect([...ranks.keys()].sort()).toEqual([0, 1, 2, 3]);
    const full = readTensors(join(dir, plan, "model.safetensors"));
    let split = 0;
    for (const [r, { rank, parts }] of ranks) {
      expect(rank).toEqual({ rank: r, worldSize: WORLD, localRank: r, launcher: "openmpi" });
      expect(Object.keys(parts).sort()).toEqual([...full.keys()].sort());
      for (const [name, t] of full) {
        const c = cut(name, t.shape, r);
        if (c) split++;
        expect(parts[name], `rank ${r}: ${name}`).toBe(sha256(narrow(t, c)));
      }
    }
    expect(split).toBeGreaterThan(WORLD * 10);
    if (plan === "llama") {
      // Two K/V heads among four ranks: ranks 0 and 1 hold head 0, ranks 2 and 3 head 1.
      const k = [0, 1, 2, 3].map((r) => ranks.get(r)!.parts["model.layers.1.self_attn.k_proj.weight"]);
      expect([k[0] === k[1], k[2] === k[3], k[1] === k[2]]).toEqual([true, true, false]);
    }
  }, 60_000);
});
