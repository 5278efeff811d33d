/**
 * What the benchmarks share: where generated files go (`bench/data/`, git-ignored), model shapes, timing by
 * median, the JavaScript runtimes a child can run under, and a peer run through Python when the reference is
 * installed there. (GPT-2's shapes are the demo's: `gpt2Shapes` in src/cli/demo.ts.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, realpathSync, rmSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../ffi/runtime.ts";
import { fillRandom } from "../src/cli/random.ts";
import { save } from "../src/format/writer.ts";

export const DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "data");
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The pinned Node with `node:ffi` (the `node` devDependency). */
const PINNED_NODE = join(ROOT, "node_modules/node/bin/node");

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

/**
 * Writes TinyLlama's tensors (its first `layers` layers, with embeddings and head) as bf16 safetensors, every
 * tensor a prefix of one random block (±0.5..1) the largest one's size: 2.2 GB at 22 layers, written in seconds.
 *
 * @example
 * ```ts
 * const file = await generated("llama-1.1B-bf16.safetensors", (path) => writeTinyLlama(path));
 * ```
 */
export async function writeTinyLlama(path: string, layers = 22): Promise<void> {
  const shapes = tinyLlamaShapes().filter(([name]) => Number(/^model\.layers\.(\d+)\./.exec(name)?.[1] ?? -1) < layers);
  const sizes = shapes.map(([, shape]) => shape.reduce((a, b) => a * b, 2));
  const noise = new Uint8Array(fillRandom(new Uint32Array(Math.max(...sizes) / 4), 0x9e3779b9, 0x807f807f, 0x3f003f00).buffer);
  console.error(`writing ${path} …`);
  await save(path, new Map(shapes.map(([name, shape], i) => [name, { dtype: "BF16" as const, shape, data: noise.subarray(0, sizes[i]) }])));
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

/**
 * The Python of the shared peers venv (CPU torch, safetensors, boto3, huggingface_hub), made by its tool if need
 * be, or why there is none.
 *
 * @example
 * ```ts
 * const peers = peersPython();
 * if ("path" in peers) spawnSync(peers.path, ["bench/ranks_peers.py", folder]);
 * ```
 */
export function peersPython(): { path: string } | { reason: string } {
  const tool = join(ROOT, "../shared/tools/peers-venv");
  const r = spawnSync("bash", [tool], { encoding: "utf8" });
  if (r.status === 0) return { path: r.stdout.trim().split("\n").at(-1)! };
  return { reason: `no Python peers here (${tool} failed: ${(r.stderr || r.error?.message || "").trim().split("\n").at(-1)})` };
}

export const header = (title: string) => console.log(`${title} — ${runtime}`);

/** One result row: a label, a time, and how it compares to the baseline. */
export function row(label: string, ms: number | undefined, baselineMs: number, unit = "ms"): void {
  if (ms === undefined) return console.log(`  ${label.padEnd(44)} unavailable`);
  console.log(`  ${label.padEnd(44)} ${ms.toFixed(3).padStart(10)} ${unit}   ×${(ms / baselineMs).toFixed(2)} of baseline`);
}

/** A JavaScript runtime a benchmark runs its children under. */
export interface JsRuntime {
  /** What a table row calls it: `Bun`, `Deno`, `Node 26`, `Node 20`. */
  name: string;
  /** The backend `open()` picks there by default: mmap where the runtime has FFI, read where it has none. */
  backend: "mmap" | "read";
  /** The command line that runs the TypeScript file `script` with `args`. */
  argv(script: string, args: string[]): string[];
}

/**
 * The runtimes found here, each once: Bun, Deno, the pinned Node 26 (mmap through `node:ffi`) and an older
 * Node from PATH (the read backend: `npm run` puts the pinned one first on PATH, so the first Node there is
 * not always the old one). Both Nodes run the same bundle of the script, built with Bun, so that they differ
 * only in runtime and backend; without Bun there are no Node rows.
 *
 * @example
 * ```ts
 * for (const rt of jsRuntimes()) spawnSync(rt.argv("bench/pickle-child.ts", ["tensor", path])[0]!, ...);
 * ```
 */
export function jsRuntimes(): JsRuntime[] {
  const bun = runtime === "bun" ? process.execPath : tool("bun");
  const deno = runtime === "deno" ? process.execPath : tool("deno");
  const out: JsRuntime[] = [];
  if (bun) out.push({ name: "Bun", backend: "mmap", argv: (script, args) => [bun, script, ...args] });
  if (deno) out.push({ name: "Deno", backend: "mmap", argv: (script, args) => [deno, "run", "-A", script, ...args] });
  if (!bun) return out;
  const nodes = [PINNED_NODE, process.env.npm_node_execpath, ...which("node"), "/usr/bin/node"];
  const seen = new Set<string>();
  for (const bin of nodes) {
    if (!bin || !existsSync(bin) || seen.has(realpathSync(bin))) continue;
    seen.add(realpathSync(bin));
    const major = nodeMajor(bin);
    if (major === undefined || out.some((r) => r.name.startsWith("Node") && (r.backend === "mmap") === major >= 26)) continue;
    out.push({ name: `Node ${major}`, backend: major >= 26 ? "mmap" : "read", argv: (script, args) => [bin, nodeBundle(bun, script), ...args] });
  }
  return out;
}

/** A tool from node_modules/.bin, else from PATH. */
function tool(name: string): string | undefined {
  const local = join(ROOT, "node_modules/.bin", name);
  return existsSync(local) ? local : which(name)[0];
}

function which(name: string): string[] {
  const r = spawnSync("which", ["-a", name], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim().split("\n") : [];
}

function nodeMajor(bin: string): number | undefined {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  const major = Number(/^v(\d+)\./.exec(r.stdout ?? "")?.[1]);
  return r.status === 0 && Number.isInteger(major) ? major : undefined;
}

const bundles = new Map<string, string>();

/**
 * `script` bundled for Node, once per run: Node 20 cannot run TypeScript. Split, so that the Bun and Deno FFI
 * modules, imported only where they run, stay unloaded.
 */
function nodeBundle(bun: string, script: string): string {
  let out = bundles.get(script);
  if (out) return out;
  const name = basename(script).replace(/\.ts$/, "");
  const dir = join(DATA_DIR, "node", name);
  rmSync(dir, { recursive: true, force: true });
  const r = spawnSync(bun, ["build", script, "--target=node", "--format=esm", "--splitting", `--outdir=${dir}`], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bun build ${script} failed: ${r.stderr}`);
  out = join(dir, `${name}.js`);
  bundles.set(script, out);
  return out;
}
