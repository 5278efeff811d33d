/**
 * What the benchmarks share: where generated files go (`bench/data/`, git-ignored), model shapes, timing by
 * median, and a peer run through Python when the reference is installed there. (GPT-2's shapes are the
 * demo's: `gpt2Shapes` in src/cli/demo.ts.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../ffi/runtime.ts";

export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "data");

/**
 * TinyLlama-1.1B's tensors in state-dict order: 22 layers, hidden 2048, MLP 5632, grouped KV (4 heads of
 * 64), vocabulary 32000. All bf16 in the benchmarks: 2.2 GB.
 */
export function tinyLlamaShapes(): [string, number[]][] {
  const h = 2048;
  const mlp = 5632;
  const kv = 256;
  const shapes: [string, number[]][] = [["model.embed_tokens.weight", [32000, h]]];
  for (let i = 0; i < 22; i++) {
    const p = `model.layers.${i}.`;
    shapes.push([`${p}self_attn.q_proj.weight`, [h, h]], [`${p}self_attn.k_proj.weight`, [kv, h]], [`${p}self_attn.v_proj.weight`, [kv, h]]);
    shapes.push([`${p}self_attn.o_proj.weight`, [h, h]], [`${p}mlp.gate_proj.weight`, [mlp, h]], [`${p}mlp.up_proj.weight`, [mlp, h]]);
    shapes.push([`${p}mlp.down_proj.weight`, [h, mlp]], [`${p}input_layernorm.weight`, [h]], [`${p}post_attention_layernorm.weight`, [h]]);
  }
  shapes.push(["model.norm.weight", [h]], ["lm_head.weight", [32000, h]]);
  return shapes;
}

/** A generated input: made once, reused by later runs. */
export async function generated(name: string, make: (path: string) => Promise<void> | void): Promise<string> {
  mkdirSync(DATA_DIR, { recursive: true });
  const path = join(DATA_DIR, name);
  if (!existsSync(path)) await make(path);
  return path;
}

/** Median wall time in milliseconds of `runs` calls, after `warmup` untimed ones. */
export async function medianMs(fn: () => unknown, runs: number, warmup = 2): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

/**
 * Runs a Python timing snippet (it must print one number, milliseconds) when `module` imports there;
 * undefined when Python or the module is missing.
 */
export function pythonMs(module: string, script: string): number | undefined {
  const probe = spawnSync("python3", ["-c", `import ${module}`], { stdio: "ignore" });
  if (probe.error || probe.status !== 0) return undefined;
  const run = spawnSync("python3", ["-c", script], { encoding: "utf8" });
  const ms = Number(run.stdout.trim().split("\n").pop());
  return run.status === 0 && Number.isFinite(ms) ? ms : undefined;
}

export const header = (title: string) => console.log(`${title} — ${runtime}`);

/** One result row: a label, a time, and how it compares to the baseline. */
export function row(label: string, ms: number | undefined, baselineMs: number, unit = "ms"): void {
  if (ms === undefined) return console.log(`  ${label.padEnd(44)} unavailable`);
  console.log(`  ${label.padEnd(44)} ${ms.toFixed(3).padStart(10)} ${unit}   ×${(ms / baselineMs).toFixed(2)} of baseline`);
}
