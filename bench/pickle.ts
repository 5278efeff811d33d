/**
 * Load times: tensormap on safetensors and on PyTorch pickles against torch.load, in one run, tensormap under
 * every runtime here: Bun, Deno, Node 26 (mmap through node:ffi) and an older Node (the read backend).
 *
 *   bun bench/pickle.ts            (what `npm run bench` runs; RUNS=9 for more runs, PYTHON=… for the peers)
 *
 * Generates a GPT-2-small (124M params, f32) and a 1.1B-param bf16 checkpoint, each as `.safetensors`
 * (tensormap's writer) and `.bin` (torch.save through Python, when torch imports there:
 * `bash ../shared/tools/peers-venv` and PYTHON=/tmp/peers/bin/python, or Debian's python3-torch). Every
 * measurement is its own process, so it reports both the in-process time (open until every tensor has been
 * touched) and the whole-process time from spawn to exit (what a serverless cold start pays). Every loader
 * touches tensors the same way, two ways in turn: "every tensor touched" reads the first and last byte of each
 * tensor (it is usable: what the issue's 50× is about), "every page read" reads one byte of every 4 KiB page
 * (all the data has come into memory, which torch.load does anyway and a lazy mmap does not). Warm = page
 * cache hot (after one untimed run); cold = the files evicted with posix_fadvise(DONTNEED) before each run,
 * every page read. Median of RUNS runs, taken in rounds that run every loader once (a shared machine's drift
 * falls on all of them alike). Each tensormap row names its runtime and the backend its child reported.
 * Writes bench/results/pickle.md and bench/results/pickle.svg. Generated checkpoints go to bench/data/
 * (git-ignored) and are reused by later runs.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gpt2Shapes } from "../src/cli/demo.ts";
import { fillRandom } from "../src/cli/random.ts";
import { save, type TensorData } from "../src/format/writer.ts";
import { generated, jsRuntimes, tinyLlamaShapes } from "./support.ts";

const RUNS = Number(process.env.RUNS ?? 5);
const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.PYTHON ?? "/usr/bin/python3";
const peers = join(here, "pickle_peers.py");

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

interface Loader {
  tool: string;
  file: string;
  launch: Launch;
  /** The backend the tool's name says its child uses (tensormap rows): checked against what the child reports. */
  backend?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Medians of every loader: warm with each way of touching, and cold with every page read. Each round runs
 * every loader once, each round starting one further along.
 */
function measure(model: string, loaders: Loader[]): Row[] {
  const once = (l: Loader, touch: Touch): Timing => {
    const r = l.launch(touch);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as { ms: number; backend?: string };
    if (l.backend && out.backend !== l.backend) throw new Error(`${l.tool}: the child opened with ${out.backend}, not ${l.backend}`);
    return { inProcess: out.ms, process: r.ms };
  };
  const medians = (runs: Timing[]): Timing => ({ inProcess: median(runs.map((r) => r.inProcess)), process: median(runs.map((r) => r.process)) });
  const rounds = (each: (l: Loader) => Timing): Timing[][] => {
    const runs: Timing[][] = loaders.map(() => []);
    for (let k = 0; k < RUNS; k++) {
      for (let i = 0; i < loaders.length; i++) {
        const j = (i + k) % loaders.length;
        runs[j]!.push(each(loaders[j]!));
      }
    }
    return runs;
  };
  for (const l of loaders) once(l, "page");
  console.error(`${model}: warm, every tensor`);
  const touched = rounds((l) => once(l, "tensor"));
  console.error(`${model}: warm, every page`);
  const paged = rounds((l) => once(l, "page"));
  console.error(`${model}: cold`);
  const cold = rounds((l) => {
    if (hasTorch) run(python, [peers, "evict", l.file]);
    return once(l, "page");
  });
  return loaders.map((l, i) => ({
    model,
    tool: l.tool,
    file: l.file.endsWith(".bin") ? ".bin" : ".safetensors",
    touched: medians(touched[i]!),
    paged: medians(paged[i]!),
    cold: medians(cold[i]!),
  }));
}

async function main(): Promise<void> {
  const child = join(here, "pickle-child.ts");
  const runtimes = jsRuntimes();
  const bun = runtimes.find((r) => r.name === "Bun");
  const rows: Row[] = [];
  for (const m of [gpt2Small(), llama1b()]) {
    const { st, bin } = await prepare(m);
    const tensormap = (name: string, file: string, argv: string[], backend: string): Loader => ({
      tool: name,
      file,
      backend,
      launch: (t) => run(argv[0]!, [...argv.slice(1), t, file]),
    });
    const loaders: Loader[] = runtimes.map((rt) => tensormap(`tensormap ${rt.name} (${rt.backend})`, st, rt.argv(child, []), rt.backend));
    if (bin) {
      if (bun) loaders.push(tensormap(`tensormap .bin, ${bun.name} (${bun.backend})`, bin, bun.argv(child, []), bun.backend));
      loaders.push({ tool: "torch.load(weights_only=True)", file: bin, launch: (t) => run(python, [peers, "load", "torch", t, bin]) });
      if (hasTorchMmap) loaders.push({ tool: "torch.load(mmap=True)", file: bin, launch: (t) => run(python, [peers, "load", "torch-mmap", t, bin]) });
    }
    if (hasSafetensors) loaders.push({ tool: "safetensors.torch.load_file", file: st, launch: (t) => run(python, [peers, "load", "safetensors", t, st]) });
    loaders.push({
      tool: "cat FILE >/dev/null (read ceiling)",
      file: st,
      launch: () => {
        const r = run("sh", ["-c", 'cat "$1" >/dev/null', "sh", st]);
        return { ms: r.ms, stdout: JSON.stringify({ ms: r.ms }) };
      },
    });
    rows.push(...measure(m.name, loaders));
  }
  const md = table(rows);
  mkdirSync(join(here, "results"), { recursive: true });
  writeFileSync(join(here, "results/pickle.md"), md);
  writeFileSync(join(here, "results/pickle.svg"), chart(rows));
  console.log(md);
}

const fmt = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));

function table(rows: Row[]): string {
  const lines = [
    "# Load time: tensormap vs torch.load",
    "",
    `Generated by \`bun bench/pickle.ts\` on ${new Date().toISOString().slice(0, 10)}; median of ${RUNS} runs, each its own process, in rounds that run every loader once.`,
    "In-process: open until every tensor has been touched, the same way for every loader: *every tensor* reads the first and last byte of each tensor (it is ready to use), *every page* reads one byte of every 4 KiB page (all the data is in memory, as torch.load leaves it). Process: spawn to exit, imports included. Cold: the file evicted from the page cache first, every page read.",
    "tensormap rows name the runtime and the backend `open()` chose there (each child reports it; the run stops if it differs). Both Nodes run the same bundle of the child.",
    `Peers: torch ${hasTorch ? "via " + python : "not installed"}${hasTorchMmap ? "" : "; torch.load(mmap=True) not supported by this torch"}${hasSafetensors ? "" : "; Python safetensors not importable"}.`,
    "",
  ];
  const models = [...new Set(rows.map((r) => r.model))];
  for (const model of models) {
    const mine = rows.filter((r) => r.model === model);
    const torch = mine.find((r) => r.tool.startsWith("torch.load(weights"));
    const vs = (r: Row, pick: (r: Row) => Timing) => (torch && !r.tool.startsWith("cat") ? `${(pick(torch).inProcess / pick(r).inProcess).toFixed(1)}×` : "");
    lines.push(
      `## ${model}`,
      "",
      "| loader | file | warm in-process ms, every tensor | faster than torch.load | warm process ms, every tensor | warm in-process ms, every page | faster than torch.load | warm process ms, every page | cold in-process ms | cold process ms |",
      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    );
    for (const r of mine) {
      const cells = [fmt(r.touched.inProcess), vs(r, (x) => x.touched), fmt(r.touched.process), fmt(r.paged.inProcess), vs(r, (x) => x.paged), fmt(r.paged.process), fmt(r.cold.inProcess), fmt(r.cold.process)];
      lines.push(`| ${r.tool} | ${r.file} | ${cells.join(" | ")} |`);
    }
    lines.push("");
  }
  lines.push(...ratios(rows, models));
  return lines.join("\n");
}

/**
 * The runtimes against each other (Node 26 with FFI against Bun, and against the old Node's read backend),
 * with the targets: Node 26 within 15% of Bun warm in-process, and its whole process ≥ 3× faster than the
 * read backend's.
 */
function ratios(rows: Row[], models: string[]): string[] {
  const lines = ["## Runtimes side by side", "", "| model | Node 26 (mmap) / Bun (mmap), warm in-process, every tensor | every page | Node 20 (read) / Node 26 (mmap), warm process, every tensor | every page |", "|---|--:|--:|--:|--:|"];
  const find = (model: string, prefix: string) => rows.find((r) => r.model === model && r.file === ".safetensors" && r.tool.startsWith(prefix));
  const r2 = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  let any = false;
  for (const model of models) {
    const ffi = rows.find((r) => r.model === model && r.file === ".safetensors" && /^tensormap Node \d+ \(mmap\)/.test(r.tool));
    const read = rows.find((r) => r.model === model && r.file === ".safetensors" && /^tensormap Node \d+ \(read\)/.test(r.tool));
    const bun = find(model, "tensormap Bun");
    if (!ffi || !bun || !read) continue;
    any = true;
    lines.push(`| ${model} | ${r2(ffi.touched.inProcess, bun.touched.inProcess)} | ${r2(ffi.paged.inProcess, bun.paged.inProcess)} | ${r2(read.touched.process, ffi.touched.process)} | ${r2(read.paged.process, ffi.paged.process)} |`);
  }
  lines.push("", "Targets: Node 26 / Bun ≤ 1.15× in process; Node 20 / Node 26 ≥ 3× for the whole process.", "");
  return any ? lines : [];
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
