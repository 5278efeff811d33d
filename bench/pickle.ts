/**
 * Load times: tensormap on safetensors and on PyTorch pickles against torch.load, in one run.
 *
 *   bun bench/pickle.ts            (what `npm run bench` runs)
 *
 * Generates a GPT-2-small (124M params, f32) and a 1.1B-param bf16 checkpoint, each as `.safetensors`
 * (tensormap's writer) and `.bin` (torch.save through Python, when Debian's python3-torch is installed:
 * `apt-get update && apt-get install -y python3-torch`). Every measurement is its own process, so it reports
 * both the in-process time (open until every tensor has been touched) and the whole-process time from spawn to
 * exit (what a serverless cold start pays). Every loader touches tensors the same way, two ways in turn:
 * "every tensor touched" reads the first and last byte of each tensor (it is usable: what the issue's 50× is
 * about), "every page read" reads one byte of every 4 KiB page (all the data has come into memory, which
 * torch.load does anyway and a lazy mmap does not). Warm = page cache hot (after one untimed run); cold = the
 * files evicted with posix_fadvise(DONTNEED) before each run, every page read. Median of RUNS runs.
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

type Touch = "tensor" | "page";
type Launch = (touch: Touch) => { ms: number; stdout: string };
interface Timing {
  inProcess: number;
  process: number;
}

interface Row {
  model: string;
  tool: string;
  file: string;
  /** Warm, every tensor touched. */
  touched: Timing;
  /** Warm, every page read. */
  paged: Timing;
  /** Cold, every page read. */
  cold: Timing;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Medians of one loader: warm with each way of touching, and cold with every page read. */
function measure(files: string[], launch: Launch): Omit<Row, "model" | "tool" | "file"> {
  const once = (touch: Touch): Timing => {
    const r = launch(touch);
    return { inProcess: JSON.parse(r.stdout.trim().split("\n").pop()!).ms as number, process: r.ms };
  };
  const medians = (runs: Timing[]): Timing => ({ inProcess: median(runs.map((r) => r.inProcess)), process: median(runs.map((r) => r.process)) });
  once("page");
  const touched = medians(Array.from({ length: RUNS }, () => once("tensor")));
  const paged = medians(Array.from({ length: RUNS }, () => once("page")));
  const cold = medians(
    Array.from({ length: RUNS }, () => {
      if (hasTorch) run(python, [peers, "evict", ...files]);
      return once("page");
    }),
  );
  return { touched, paged, cold };
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
    const loaders: Array<[string, string, Launch]> = [
      ["tensormap (Bun)", st, (t) => run(bunBin, [child, t, st])],
      ["tensormap (Deno)", st, (t) => run(denoBin, ["run", "-A", "--unstable-ffi", child, t, st])],
      ["tensormap (Node)", st, (t) => run("node", [nodeScript, t, st])],
    ];
    if (bin) {
      loaders.push(["tensormap .bin (Bun)", bin, (t) => run(bunBin, [child, t, bin])]);
      loaders.push(["torch.load(weights_only=True)", bin, (t) => run(python, [peers, "load", "torch", t, bin])]);
      if (hasTorchMmap) loaders.push(["torch.load(mmap=True)", bin, (t) => run(python, [peers, "load", "torch-mmap", t, bin])]);
    }
    if (hasSafetensors) loaders.push(["safetensors.torch.load_file", st, (t) => run(python, [peers, "load", "safetensors", t, st])]);
    loaders.push(["cat FILE >/dev/null (read ceiling)", st, () => {
      const r = run("sh", ["-c", 'cat "$1" >/dev/null', "sh", st]);
      return { ms: r.ms, stdout: JSON.stringify({ ms: r.ms }) };
    }]);
    for (const [tool, file, launch] of loaders) {
      console.error(`${m.name}: ${tool}`);
      rows.push({ model: m.name, tool, file: file.endsWith(".bin") ? ".bin" : ".safetensors", ...measure([file], launch) });
      if (tool.startsWith("tensormap")) backends.set(tool, JSON.parse(launch("tensor").stdout.trim()).backend);
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
    "In-process: open until every tensor has been touched, the same way for every loader: *every tensor* reads the first and last byte of each tensor (it is ready to use), *every page* reads one byte of every 4 KiB page (all the data is in memory, as torch.load leaves it). Process: spawn to exit, imports included, every page read. Cold: the file evicted from the page cache first, every page read.",
    `tensormap backends: ${[...backends].map(([k, v]) => `${k} → ${v}`).join(", ")}.`,
    `Peers: torch ${hasTorch ? "via " + python : "not installed"}${hasTorchMmap ? "" : "; torch.load(mmap=True) not supported by this torch"}${hasSafetensors ? "" : "; Python safetensors not importable"}.`,
    "",
  ];
  for (const model of [...new Set(rows.map((r) => r.model))]) {
    const mine = rows.filter((r) => r.model === model);
    const torch = mine.find((r) => r.tool.startsWith("torch.load(weights"));
    const vs = (r: Row, pick: (r: Row) => Timing) => (torch && !r.tool.startsWith("cat") ? `${(pick(torch).inProcess / pick(r).inProcess).toFixed(1)}×` : "");
    lines.push(
      `## ${model}`,
      "",
      "| loader | file | warm in-process ms, every tensor | faster than torch.load | warm in-process ms, every page | faster than torch.load | warm process ms | cold in-process ms | cold process ms |",
      "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    );
    for (const r of mine) {
      const cells = [fmt(r.touched.inProcess), vs(r, (x) => x.touched), fmt(r.paged.inProcess), vs(r, (x) => x.paged), fmt(r.paged.process), fmt(r.cold.inProcess), fmt(r.cold.process)];
      lines.push(`| ${r.tool} | ${r.file} | ${cells.join(" | ")} |`);
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** Horizontal bars of warm in-process time on a log scale, one group per model, two bars per loader. */
function chart(rows: Row[]): string {
  const barRows = rows.filter((r) => !r.tool.startsWith("cat"));
  const label = 300;
  const width = 520;
  const rowH = 30;
  const models = [...new Set(barRows.map((r) => r.model))];
  const height = 60 + barRows.length * rowH + models.length * 30;
  const all = barRows.flatMap((r) => [r.touched.inProcess, r.paged.inProcess]);
  const max = Math.log10(Math.max(...all) * 2);
  const min = Math.log10(Math.min(...all) / 2);
  const x = (ms: number) => Math.max(1, ((Math.log10(ms) - min) / (max - min)) * width);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${label + width + 90}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Warm in-process load time (ms, log scale; shorter is faster)</text>`,
    `<text x="10" y="38">upper bar: every tensor touched · lower bar: every 4 KiB page read</text>`,
  ];
  let y = 50;
  for (const model of models) {
    out.push(`<text x="10" y="${y + 14}" font-weight="bold">${model}</text>`);
    y += 24;
    for (const r of barRows.filter((b) => b.model === model)) {
      const colour = r.tool.startsWith("tensormap") ? ["#5c9", "#2a7"] : ["#e97", "#c64"];
      out.push(`<text x="${label - 6}" y="${y + 17}" text-anchor="end">${escape(`${r.tool} ${r.file}`)}</text>`);
      for (const [i, t] of [r.touched, r.paged].entries()) {
        const top = y + 3 + i * 12;
        out.push(`<rect x="${label}" y="${top}" width="${x(t.inProcess).toFixed(1)}" height="11" fill="${colour[i]}"/>`);
        out.push(`<text x="${label + x(t.inProcess) + 4}" y="${top + 10}" font-size="10">${fmt(t.inProcess)}</text>`);
      }
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
