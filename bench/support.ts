/**
 * What the benchmarks share: where generated files go (`bench/data/`, git-ignored), timing by median,
 * and a peer run through Python when the reference is installed there.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../src/runtime.ts";

export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "data");

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
