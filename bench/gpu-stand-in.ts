/**
 * `bench/gpu.ts --dry-run`: the same benchmark in a child process whose libcudart is the checking stand-in
 * (`../shared/tools/fakecudart`, DESIGN §9), judged by the stand-in's exit report as well as by its own checks.
 * The stand-in writes that report when the process ends, hence the child.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { peersPython } from "./support.ts";

/** The project's shared tools beside the checkout (fakecudart, peers-venv, device-pack). */
export const SHARED_TOOLS = resolve(dirname(fileURLToPath(import.meta.url)), "../../shared/tools");

const gbText = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

/**
 * Builds the stand-in in a temporary folder, runs `script` under it with `args` (plus `--json`, and `--python`
 * or `--skip-peers`: `peersAs`, else the peers venv's Python when there is one), then checks its report. Resolves to the exit status: the child's when it failed, else 1 when the
 * report shows a violation, a leak or bytes the benchmark did not count, else 0.
 *
 * @example
 * ```ts
 * process.exit(await runOnStandIn("bench/gpu.ts", ["--stand-in", "--gb", "0.25"]));
 * ```
 */
export async function runOnStandIn(script: string, args: string[], peersAs?: { path: string } | { reason: string }): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), "tensormap-gpu-dry-"));
  try {
    const lib = build(work);
    const peers = peersAs ?? peersPython();
    const json = join(work, "gpu.json");
    const reportFile = join(work, "fakecudart.jsonl");
    const peerArgs = "path" in peers ? ["--python", peers.path] : ["--skip-peers", peers.reason];
    console.log(`dry run: fakecudart built at ${lib}; peers: ${"path" in peers ? peers.path : peers.reason}`);
    const child = spawnSync(process.execPath, [script, ...args, ...peerArgs, "--json", json], {
      stdio: "inherit",
      env: { ...process.env, TENSORMAP_CUDART: lib, FAKECUDART_REPORT: reportFile },
    });
    const verdict = judge(reportFile, json);
    console.log(verdict.line);
    if (process.env.OUT && existsSync(reportFile)) writeFileSync(join(process.env.OUT, "fakecudart.jsonl"), readFileSync(reportFile));
    if (child.status !== 0) return child.status ?? 1;
    return verdict.ok ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function build(dir: string): string {
  const r = spawnSync("bash", [join(SHARED_TOOLS, "fakecudart/build.sh")], { env: { ...process.env, FAKECUDART_OUT: dir }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`cannot build fakecudart: ${(r.stderr || r.error?.message || "").trim()}`);
  return join(dir, "libcudart.so");
}

/** The report, judged: no violation, nothing left allocated, and the bytes copied each way what the run counted. */
function judge(reportFile: string, jsonFile: string): { ok: boolean; line: string } {
  const lines = existsSync(reportFile) ? readFileSync(reportFile, "utf8").split("\n").filter((l) => l.trim()) : [];
  if (lines.length !== 1 || !existsSync(jsonFile)) {
    return { ok: false, line: `fakecudart: ${lines.length} reports and ${existsSync(jsonFile) ? "a" : "no"} result file (the run did not end normally)` };
  }
  const r = JSON.parse(lines[0]!) as Record<string, number | string[]>;
  const { copied } = JSON.parse(readFileSync(jsonFile, "utf8")) as { copied: { h2dBytes: number; d2hBytes: number } };
  const problems: string[] = [];
  if (r.violations) problems.push(`${r.violations} violations: ${(r.first as string[]).slice(0, 3).join(" | ")}`);
  for (const k of ["leaked_device_bytes", "leaked_device_allocs", "leaked_pinned_bytes", "leaked_registered", "live_streams", "live_events", "pending_ops"]) {
    if (r[k]) problems.push(`${k} ${r[k]}`);
  }
  if (r.bytes_h2d !== copied.h2dBytes) problems.push(`H2D ${r.bytes_h2d} bytes, the run counted ${copied.h2dBytes}`);
  if (r.bytes_d2h !== copied.d2hBytes) problems.push(`D2H ${r.bytes_d2h} bytes, the run counted ${copied.d2hBytes}`);
  if (problems.length) return { ok: false, line: `fakecudart report: FAILED: ${problems.join("; ")}` };
  const moved = `H2D ${gbText(copied.h2dBytes)} and D2H ${gbText(copied.d2hBytes)}, as the run counted`;
  return { ok: true, line: `fakecudart report: 0 violations, nothing left allocated (device, pinned, registered, streams, events), ${moved}` };
}
