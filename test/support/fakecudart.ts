/**
 * The checking libcudart stand-in (`../shared/tools/fakecudart`, DESIGN §9): built once per version of its source
 * with the machine's C compiler, and run under in child processes whose exit report says what they did.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { runtime } from "../../ffi/runtime.ts";
import { ROOT, run } from "../package/artefact.ts";

const SOURCE = resolve(ROOT, "../shared/tools/fakecudart");
const CACHE = join(ROOT, "node_modules/.cache/fakecudart");

/**
 * Builds the stand-in (its `build.sh`) unless this version of it is built already, and returns the library's
 * path. Each version lands in a folder named by the hash of its source; a build goes to a folder of its own and is
 * renamed into place, so test processes building at once never see half a library. Throws with the compiler's
 * output when the build fails.
 *
 * @example
 * ```ts
 * const lib = buildFakeCudart(); // …/node_modules/.cache/fakecudart/3f2a…/libcudart.so
 * ```
 */
export function buildFakeCudart(): string {
  const hash = createHash("sha256");
  for (const f of ["fakecudart.c", "build.sh"]) hash.update(readFileSync(join(SOURCE, f)));
  const dir = join(CACHE, hash.digest("hex").slice(0, 16));
  const lib = join(dir, "libcudart.so");
  if (existsSync(lib)) return lib;
  mkdirSync(CACHE, { recursive: true });
  const scratch = mkdtempSync(join(CACHE, "build-"));
  const built = spawnSync("bash", [join(SOURCE, "build.sh")], { env: { ...process.env, FAKECUDART_OUT: scratch }, encoding: "utf8" });
  if (built.status !== 0) {
    rmSync(scratch, { recursive: true, force: true });
    throw new Error(`building fakecudart failed (${built.error?.message ?? `status ${built.status}`}):\n${built.stderr}`);
  }
  try {
    renameSync(scratch, dir);
  } catch (e) {
    // Another process put the same version in place first.
    rmSync(scratch, { recursive: true, force: true });
    if (!existsSync(lib)) throw e;
  }
  return lib;
}

/** The stand-in's exit report (its README lists every field; these are the ones the suite reads). */
export interface FakeCudartReport {
  violations: number;
  first: string[];
  reason: string;
  leaked_device_bytes: number;
  leaked_device_allocs: number;
  leaked_pinned_bytes: number;
  leaked_pinned_allocs: number;
  leaked_registered: number;
  leaked_registered_bytes: number;
  live_streams: number;
  live_events: number;
  pending_ops: number;
  source_modified_in_flight: number;
  races: number;
  faults: number;
  bytes_h2d: number;
  bytes_d2h: number;
  async_copies: number;
  pageable_async_copies: number;
  device_allocs_total: number;
  pinned_allocs_total: number;
  registrations_total: number;
  injected_failures: number;
  devices: number;
  warnings: number;
  warnings_first: string[];
}

export interface FakeCudartRun {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Every report line the process wrote (one, when it ended normally). */
  reports: FakeCudartReport[];
}

let runs = 0;

/**
 * Runs `script ARGS` as a child of this runtime (Bun or Deno: loading the stand-in takes FFI) with
 * `TENSORMAP_CUDART` naming it, `FAKECUDART_REPORT` a fresh file under `dir` and the `FAKECUDART_*` settings given
 * (none inherited), and returns the child's output and report.
 *
 * @example
 * ```ts
 * const r = await runUnderFakeCudart(lib, dir, "test/device/fakecudart-child.ts", [spec], { FAKECUDART_DEVICES: "2" });
 * expect(r.reports[0]!.violations).toBe(0);
 * ```
 */
export async function runUnderFakeCudart(
  lib: string,
  dir: string,
  script: string,
  args: readonly string[],
  settings: Record<string, string> = {},
): Promise<FakeCudartRun> {
  const report = join(dir, `report-${++runs}.jsonl`);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("FAKECUDART_")) env[k] = v;
  Object.assign(env, settings, { TENSORMAP_CUDART: lib, FAKECUDART_REPORT: report, NO_COLOR: "1" });
  const argv = runtime === "deno" ? ["run", "-A", script, ...args] : [script, ...args];
  const { code: status, signal, stdout, stderr } = await run(process.execPath, argv, { cwd: ROOT, env });
  const lines = existsSync(report) ? readFileSync(report, "utf8").split("\n").filter((l) => l.trim()) : [];
  return { status, signal, stdout, stderr, reports: lines.map((l) => JSON.parse(l) as FakeCudartReport) };
}
