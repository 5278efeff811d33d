/**
 * Load times: tensormap on safetensors and on PyTorch pickles against torch.load, in one run.
 *
 *   bun bench/pickle.ts            (what `npm run bench` runs)
 *
 * Generates a GPT-2-small (124M params, f32) and a 1.1B-param bf16 checkpoint, each as `.safetensors`
 * (tensormap's writer) and `.bin` (torch.save through Python, when Debian's python3-torch is installed:
 * `apt-get update && apt-get install -y python3-torch`). Every measurement is its own process, so it reports
 * both the in-process time (open until one byte of every 4 KiB page of every tensor has been read) and the whole-process time from spawn to
 * exit (what a serverless cold start pays). Warm = page cache hot (after one untimed run); cold = the files
 * evicted with posix_fadvise(DONTNEED) before each run. Median of RUNS runs.
 * Writes bench/results/pickle.md and bench/results/pickle.svg. Generated checkpoints go to bench/data/
 * (git-ignored) and are reused by later runs.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gpt2Shapes } from "../src/cli/demo.ts";
import { fillRandom } from "../src/cli/random.ts";
import { save, type TensorData } from "../src/format/writer.ts";
import { DATA_DIR, generated, tinyLlamaShapes } from "./support.ts";

const RUNS = Number(process.env.RUNS ?? 3);
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const python = process.env.PYTHON ?? "/usr/bin/python3";
const peers = join(here, "pickle_peers.py");
const bunBin = process.execPath;
const denoBin = join(root, "node_modules/.bin/deno");

interface Model {
  name: string;
  dtype: "F32" | "BF16";
  tensors: Array<[string, number[]]>;
}

const gpt2Small = (): Model => ({ name: "gpt2-124M-f32", dtype: "F32", tensors: gpt2Shapes() });
const llama1b = (): Model => ({ name: "llama-1.1B-bf16", dtype: "BF16", tensors: tinyLlamaShapes() });

function params(m: Model): number {
  return m.tensors.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
}

/** Plausible weights (values in ±1), cheap to make: one random 16 MiB block, repeated. */
function weights(m: Model): Map<string, TensorData> {
  const size = m.dtype === "F32" ? 4 : 2;
  const block = new Uint8Array(1 << 24);
  // Sign, exponent 126 (0.5..1), random mantissa: f32 directly; for bf16 each half-word gets the same shape.
  const [keep, set] = m.dtype === "F32" ? [0x807fffff, 0x3f000000] : [0x807f807f, 0x3f003f00];
  fillRandom(new Uint32Array(block.buffer), 0x9e3779b9, keep, set);
  const out = new Map<string, TensorData>();
  for (const [name, shape] of m.tensors) {
    const n = shape.reduce((a, b) => a * b, 1) * size;
    const data = new Uint8Array(n);
    for (let at = 0; at < n; at += block.length) data.set(block.subarray(0, Math.min(block.length, n - at)), at);
    out.set(name, { dtype: m.dtype, shape, data });
  }
  return out;
}

function run(cmd: string, args: string[], env: Record<string, string> = {}): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr || r.error}`);
  return { ms, stdout: r.stdout };
}

function pythonHas(code: string): boolean {
  return spawnSync(python, ["-c", code], { encoding: "utf8" }).status === 0;
}

const hasTorch = existsSync(python) && pythonHas("import torch");
const hasTorchMmap = hasTorch && pythonHas("import inspect, torch, sys; sys.exit(0 if 'mmap' in inspect.signature(torch.load).parameters else 1)");
const hasSafetensors = hasTorch && pythonHas("import safetensors.torch");

async function prepare(m: Model): Promise<{ st: string; bin?: string }> {
  const st = await generated(`${m.name}.safetensors`, (path) => {
    console.error(`writing ${path} (${((params(m) * (m.dtype === "F32" ? 4 : 2)) / 1e9).toFixed(2)} GB)`);
    return save(path, weights(m), { format: "pt" });
  });
  if (!hasTorch) return { st };
  const bin = await generated(`${m.name}.bin`, (path) => {
    console.error(`writing ${path} with torch.save`);
    run(python, [peers, "make-bin", st, path]);
  });
  return { st, bin };
}

interface Row {
  model: string;
  tool: string;
  file: string;
  warm: { inProcess: number; process: number };
  cold: { inProcess: number; process: number };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Warm and cold medians of one loader; `launch` runs it once and returns its in-process ms. */
function measure(files: string[], launch: () => { ms: number; stdout: string }): Row["warm"] & { cold: Row["cold"] } {
  const once = () => {
    const r = launch();
    return { inProcess: JSON.parse(r.stdout.trim().split("\n").pop()!).ms as number, process: r.ms };
  };
  once();
  const warm = Array.from({ length: RUNS }, once);
  const cold = Array.from({ length: RUNS }, () => {
    if (hasTorch) run(python, [peers, "evict", ...files]);
    return once();
  });
  return {
    inProcess: median(warm.map((w) => w.inProcess)),
    process: median(warm.map((w) => w.process)),
    cold: { inProcess: median(cold.map((c) => c.inProcess)), process: median(cold.map((c) => c.process)) },
  };
}

/** Node cannot run TypeScript here: bundle the child for it (split, so the Bun/Deno FFI modules stay unloaded). */
function nodeChild(): string {
  const out = join(DATA_DIR, "node-child");
  run(bunBin, ["build", join(here, "pickle-child.ts"), "--target=node", "--format=esm", "--splitting", `--outdir=${out}`]);
  return join(out, "pickle-child.js");
}

async function main(): Promise<void> {
  const child = join(here, "pickle-child.ts");
  const nodeScript = nodeChild();
  const rows: Row[] = [];
  const backends = new Map<string, string>();
  for (const m of [gpt2Small(), llama1b()]) {
    const { st, bin } = await prepare(m);
    const loaders: Array<[string, string, string[], () => { ms: number; stdout: string }]> = [
      ["tensormap (Bun)", st, [st], () => run(bunBin, [child, st])],
      ["tensormap (Deno)", st, [st], () => run(denoBin, ["run", "-A", "--unstable-ffi", child, st])],
      ["tensormap (Node)", st, [st], () => run("node", [nodeScript, st])],
    ];
    if (bin) {
      loaders.push(["tensormap .bin (Bun)", bin, [bin], () => run(bunBin, [child, bin])]);
      loaders.push(["torch.load(weights_only=True)", bin, [bin], () => run(python, [peers, "load", "torch", bin])]);
      if (hasTorchMmap) loaders.push(["torch.load(mmap=True)", bin, [bin], () => run(python, [peers, "load", "torch-mmap", bin])]);
    }
    if (hasSafetensors) loaders.push(["safetensors.torch.load_file", st, [st], () => run(python, [peers, "load", "safetensors", st])]);
    loaders.push(["cat FILE >/dev/null (read ceiling)", st, [st], () => {
      const r = run("sh", ["-c", 'cat "$1" >/dev/null', "sh", st]);
      return { ms: r.ms, stdout: JSON.stringify({ ms: r.ms }) };
    }]);
    for (const [tool, file, files, launch] of loaders) {
      console.error(`${m.name}: ${tool}`);
      const r = measure(files, launch);
      rows.push({ model: m.name, tool, file: file.endsWith(".bin") ? ".bin" : ".safetensors", warm: { inProcess: r.inProcess, process: r.process }, cold: r.cold });
      if (tool.startsWith("tensormap")) backends.set(tool, JSON.parse(launch().stdout.trim()).backend);
    }
  }
  const md = table(rows, backends);
  mkdirSync(join(here, "results"), { recursive: true });
  writeFileSync(join(here, "results/pickle.md"), md);
  writeFileSync(join(here, "results/pickle.svg"), chart(rows));
  console.log(md);
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

function table(rows: Row[], backends: Map<string, string>): string {
  const lines = [
    "# Load time: tensormap vs torch.load",
    "",
    `Generated by \`bun bench/pickle.ts\` on ${new Date().toISOString().slice(0, 10)}; median of ${RUNS} runs, each its own process.`,
    "In-process: open until every tensor has been touched (one byte read from every 4 KiB page of its data, as a real use of the weights would; torch.load reads them all). Process: spawn to exit, imports included.",
    `tensormap backends: ${[...backends].map(([k, v]) => `${k} → ${v}`).join(", ")}.`,
    `Peers: torch ${hasTorch ? "via " + python : "not installed"}${hasTorchMmap ? "" : "; torch.load(mmap=True) not supported by this torch"}${hasSafetensors ? "" : "; Python safetensors not importable"}.`,
    "",
  ];
  for (const model of [...new Set(rows.map((r) => r.model))]) {
    const mine = rows.filter((r) => r.model === model);
    const torch = mine.find((r) => r.tool.startsWith("torch.load(weights"));
    lines.push(`## ${model}`, "", "| loader | file | warm in-process ms | warm process ms | cold in-process ms | cold process ms | warm in-process vs torch.load |", "|---|---|--:|--:|--:|--:|--:|");
    for (const r of mine) {
      const ratio = torch && !r.tool.startsWith("cat") ? `${(torch.warm.inProcess / r.warm.inProcess).toFixed(1)}×` : "";
      lines.push(`| ${r.tool} | ${r.file} | ${fmt(r.warm.inProcess)} | ${fmt(r.warm.process)} | ${fmt(r.cold.inProcess)} | ${fmt(r.cold.process)} | ${ratio} |`);
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** Horizontal bars of warm in-process time on a log scale, one group per model. */
function chart(rows: Row[]): string {
  const barRows = rows.filter((r) => !r.tool.startsWith("cat"));
  const label = 300;
  const width = 520;
  const rowH = 22;
  const models = [...new Set(barRows.map((r) => r.model))];
  const height = 40 + barRows.length * rowH + models.length * 30;
  const max = Math.log10(Math.max(...barRows.map((r) => r.warm.inProcess)) * 2);
  const min = Math.log10(Math.min(...barRows.map((r) => r.warm.inProcess)) / 2);
  const x = (ms: number) => ((Math.log10(ms) - min) / (max - min)) * width;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${label + width + 90}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Warm in-process load time (ms, log scale; shorter is faster)</text>`,
  ];
  let y = 40;
  for (const model of models) {
    out.push(`<text x="10" y="${y + 14}" font-weight="bold">${model}</text>`);
    y += 24;
    for (const r of barRows.filter((b) => b.model === model)) {
      const colour = r.tool.startsWith("tensormap") ? "#2a7" : "#c64";
      out.push(`<text x="${label - 6}" y="${y + 14}" text-anchor="end">${escape(`${r.tool} ${r.file}`)}</text>`);
      out.push(`<rect x="${label}" y="${y + 3}" width="${Math.max(1, x(r.warm.inProcess)).toFixed(1)}" height="${rowH - 6}" fill="${colour}"/>`);
      out.push(`<text x="${label + Math.max(1, x(r.warm.inProcess)) + 4}" y="${y + 14}">${fmt(r.warm.inProcess)}</text>`);
      y += rowH;
    }
    y += 6;
  }
  out.push("</svg>");
  return out.join("\n");
}

function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

await main();
