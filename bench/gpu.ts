/**
 * GPU verification and benchmark: does a checkpoint arrive on the GPU byte for byte, and how fast, next to the
 * pinned host→device ceiling and Python's loaders, measured in this same run.
 *
 *   bun bench/gpu.ts [--gb 4] [--threads N]
 *
 * Runs under Bun alone (no node_modules, no network). Needs an NVIDIA GPU; the Python peers need python3 with
 * torch and safetensors (rows are marked n/a without them). Writes its checkpoint under bench/data/ (ignored).
 * Cold runs evict the file from the page cache with posix_fadvise(DONTNEED) first (no root needed).
 * Exit status: 0 when every tensor round-trips exactly, 1 on a mismatch or when no GPU is usable.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { CUDA } from "../ffi/types.ts";
import { check, Cleanup, deviceAlloc, hostAlloc, type CudaDevice } from "../src/device/cuda.ts";
import { loadToDevice, resolveDevice } from "../src/device/load.ts";
import { fillRandom } from "../src/cli/random.ts";
import { save, type TensorData } from "../src/format/writer.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const GB = arg("gb", 4);
const THREADS = arg("threads", 0) || undefined;
const DATA = resolve(dirname(new URL(import.meta.url).pathname), "data");
const ST = resolve(DATA, `gpu-${GB}gb.safetensors`);
const PT = ST.replace(/\.safetensors$/, ".pt");

// ---- the checkpoint: transformer-like bf16 layers, each tensor distinct, regenerable from a seed -------------
const HIDDEN = 4096;
const FFN = 8192;
const BASE = new Uint8Array(fillRandom(new Uint32Array((HIDDEN * FFN * 2) / 4), 0x9e3779b9).buffer);

/** Tensor `k`'s bytes: the base rotated by a k-dependent amount (distinct per tensor, made at memcpy speed). */
function bytesFor(k: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const shift = (k * 40_961) % BASE.byteLength;
  for (let at = 0; at < length; ) {
    const from = (shift + at) % BASE.byteLength;
    const n = Math.min(length - at, BASE.byteLength - from);
    out.set(BASE.subarray(from, from + n), at);
    at += n;
  }
  return out;
}

/** Name → (shape, bytes) for a checkpoint of about `gb` GB: 128 MiB of matrices per layer, plus odd-sized vectors. */
function layout(gb: number): { name: string; shape: number[]; bytes: () => Uint8Array }[] {
  const layers = Math.max(1, Math.round((gb * 1e9) / (2 * HIDDEN * FFN * 2)));
  const out: { name: string; shape: number[]; bytes: () => Uint8Array }[] = [];
  let k = 0;
  const add = (name: string, shape: number[]) => {
    const id = k++;
    out.push({ name, shape, bytes: () => bytesFor(id, shape.reduce((a, b) => a * b, 1) * 2) });
  };
  for (let l = 0; l < layers; l++) {
    add(`layers.${l}.mlp.up.weight`, [FFN, HIDDEN]);
    add(`layers.${l}.mlp.down.weight`, [HIDDEN, FFN]);
    add(`layers.${l}.norm.weight`, [HIDDEN]);
    add(`layers.${l}.odd.bias`, [HIDDEN + 1]); // leaves later tensors off 256-byte boundaries in the file
  }
  return out;
}

const TENSORS = layout(GB);
const TOTAL = TENSORS.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1) * 2, 0);

function python(code: string, ...argv: string[]): { ok: boolean; out: string } {
  const r = spawnSync("python3", ["-c", code, ...argv], { encoding: "utf8", maxBuffer: 1 << 24 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
  return { ok: r.status === 0, out };
}

function evict(path: string): void {
  const r = python("import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.fsync(fd)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)", path);
  if (!r.ok) throw new Error(`cannot evict ${path}: ${r.out}`);
}

async function ensureCheckpoint(): Promise<void> {
  mkdirSync(DATA, { recursive: true });
  if (!existsSync(ST) || statSync(ST).size < TOTAL) {
    console.log(`writing ${ST} (${(TOTAL / 1e9).toFixed(2)} GB bf16, ${TENSORS.length} tensors)…`);
    const tensors: Record<string, TensorData> = {};
    for (const t of TENSORS) tensors[t.name] = { dtype: "BF16", shape: t.shape, data: t.bytes() };
    await save(ST, tensors);
  }
  if (!existsSync(PT)) {
    const r = python(
      "import sys,torch\nfrom safetensors.torch import load_file\ntorch.save(load_file(sys.argv[1]), sys.argv[2])",
      ST,
      PT,
    );
    if (!r.ok) console.log(`no torch.save copy (${r.out.split("\n").at(-1)}): the torch.load row will be n/a`);
  }
}

// ---- the ceiling: pinned cudaMemcpy host→device in this process ------------------------------------------
function pinnedBandwidth(dev: CudaDevice): number {
  const { cuda } = dev;
  const size = 256 << 20;
  const reps = 16;
  const cleanup = new Cleanup();
  try {
    const host = hostAlloc(cuda, size, cleanup);
    const devPtr = deviceAlloc(dev, size, cleanup);
    const out = new BigUint64Array(1);
    check(cuda, cuda.cudaStreamCreateWithFlags(out, CUDA.streamNonBlocking), "cudaStreamCreateWithFlags");
    const stream = out[0]!;
    cleanup.add(() => check(cuda, cuda.cudaStreamDestroy(stream), "cudaStreamDestroy"));
    const copy = (n: number) => {
      for (let i = 0; i < n; i++) check(cuda, cuda.cudaMemcpyAsync(devPtr, host, BigInt(size), CUDA.memcpyHostToDevice, stream), "cudaMemcpyAsync");
      check(cuda, cuda.cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    };
    copy(2);
    const t0 = performance.now();
    copy(reps);
    return (size * reps) / ((performance.now() - t0) / 1000);
  } finally {
    cleanup.run();
  }
}

// ---- the loads -----------------------------------------------------------------------------------------------
interface Row {
  name: string;
  cold?: number;
  warm?: number;
  note?: string;
}

async function tensormap(opts: { hostRegister?: boolean; threads?: number }): Promise<number> {
  const t0 = performance.now();
  const w = await loadToDevice(ST, { device: "cuda:0", threads: THREADS, ...opts });
  const seconds = (performance.now() - t0) / 1000;
  w.free();
  return seconds;
}

/** Loads once more (untimed) and compares every tensor copied back from the GPU with the bytes it was made from. */
async function verify(): Promise<boolean> {
  let shown = 0;
  using w = await loadToDevice(ST, {
    device: "cuda:0",
    threads: THREADS,
    onProgress: (p) => {
      if (p.bytesDone - shown >= 1e9 || p.bytesDone === p.bytesTotal) {
        shown = p.bytesDone;
        console.log(`  progress: ${(p.bytesDone / 1e9).toFixed(2)} / ${(p.bytesTotal / 1e9).toFixed(2)} GB`);
      }
    },
  });
  let bad = 0;
  for (const t of TENSORS) {
    const got = w.toHost(t.name);
    const want = t.bytes();
    if (Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), Buffer.from(want.buffer)) !== 0) {
      console.log(`MISMATCH: ${t.name}`);
      bad++;
    }
  }
  console.log(`verified ${TENSORS.length} tensors (${(TOTAL / 1e9).toFixed(2)} GB) copied back from ${w.device}: ${bad ? `${bad} MISMATCHED` : "all identical"}`);
  return bad === 0;
}

const PEER = `
import sys, time, json, torch
kind, path = sys.argv[1], sys.argv[2]
torch.empty(1, device="cuda:0"); torch.cuda.synchronize()
t = time.perf_counter()
if kind == "safetensors":
    from safetensors.torch import load_file
    sd = load_file(path, device="cuda:0")
else:
    sd = torch.load(path, map_location="cuda:0", weights_only=True)
torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t, "bytes": sum(v.numel() * v.element_size() for v in sd.values())}))
`;

function peer(kind: "safetensors" | "torch", path: string): number {
  const r = python(PEER, kind, path);
  if (!r.ok) throw new Error(r.out.split("\n").at(-1));
  const { seconds, bytes } = JSON.parse(r.out.split("\n").at(-1)!) as { seconds: number; bytes: number };
  if (bytes !== TOTAL) throw new Error(`${kind} loaded ${bytes} bytes, expected ${TOTAL}`);
  return seconds;
}

async function measure(row: Row, path: string, run: () => Promise<number> | number): Promise<Row> {
  try {
    if (!existsSync(path)) throw new Error(`${path} is missing`);
    evict(path);
    row.cold = await run();
    row.warm = await run(); // the cold run left the file in the page cache
  } catch (e) {
    row.note = (e instanceof Error ? e.message : String(e)).split("\n")[0];
  }
  return row;
}

// ---- main --------------------------------------------------------------------------------------------------
/**
 * pip's torch brings its own libcudart (site-packages/nvidia/…), outside the library path: when the usual
 * lookup finds none, use the one torch loads.
 */
async function findDevice() {
  const first = await resolveDevice("cuda:0").catch((e: Error) => e);
  if (!(first instanceof Error) || !/libcudart not found/.test(first.message) || process.env.TENSORMAP_CUDART) return first;
  const r = python("import torch\ntorch.cuda.init()\nprint(next(l.split()[-1] for l in open('/proc/self/maps') if 'libcudart' in l))");
  if (!r.ok) return first;
  process.env.TENSORMAP_CUDART = r.out.split("\n").at(-1)!;
  console.log(`libcudart from torch: ${process.env.TENSORMAP_CUDART}`);
  return resolveDevice("cuda:0").catch((e: Error) => e);
}

const target = await findDevice();
if (target instanceof Error || target.kind !== "cuda") {
  console.error(`bench/gpu.ts needs a GPU: ${target instanceof Error ? target.message : target.reason}`);
  process.exit(1);
}
console.log(`device: ${target.reason}`);
await ensureCheckpoint();
const pinned = pinnedBandwidth(target.device);
console.log(`pinned cudaMemcpy host→device: ${(pinned / 1e9).toFixed(1)} GB/s`);

const exact = await verify();
const rows: Row[] = [];
rows.push(await measure({ name: "tensormap (pread ring)" }, ST, () => tensormap({})));
rows.push(await measure({ name: "tensormap (hostRegister)" }, ST, () => tensormap({ hostRegister: true })));
rows.push(await measure({ name: "safetensors load_file" }, ST, () => peer("safetensors", ST)));
rows.push(await measure({ name: "torch.load" }, PT, () => peer("torch", PT)));

const rate = (s?: number) => (s === undefined ? "" : `${(TOTAL / s / 1e9).toFixed(2)} GB/s`);
const secs = (s?: number) => (s === undefined ? "" : `${s.toFixed(3)} s`);
console.log(`\n${"loader".padEnd(26)}${"cold".padStart(12)}${"".padStart(13)}${"warm".padStart(12)}`);
for (const r of rows) {
  const line = `${r.name.padEnd(26)}${secs(r.cold).padStart(12)}${rate(r.cold).padStart(13)}${secs(r.warm).padStart(12)}${rate(r.warm).padStart(13)}`;
  console.log(r.note ? `${r.name.padEnd(26)}n/a: ${r.note}` : line);
}

const ours = rows[0]!;
if (ours.warm !== undefined) {
  const share = TOTAL / ours.warm / pinned;
  console.log(`\ntensormap warm / pinned bandwidth: ${(100 * share).toFixed(0)}% (target ≥ 80%: ${share >= 0.8 ? "met" : "MISSED"})`);
  for (const [peer, floor] of [[rows[2]!, 2], [rows[3]!, undefined]] as const) {
    for (const mode of ["cold", "warm"] as const) {
      const a = ours[mode];
      const b = peer[mode];
      if (a === undefined || b === undefined) continue;
      const goal = floor === undefined ? "" : ` (target ≥ ${floor}×: ${b / a >= floor ? "met" : "MISSED"})`;
      console.log(`tensormap vs ${peer.name}, ${mode}: ${(b / a).toFixed(2)}× faster${goal}`);
    }
  }
}
// Reader threads are the knob that matters once the file is cached: show the warm rate across a few.
const sweep: string[] = [];
for (const threads of [2, 4, 8, 12, 16]) sweep.push(`${threads}: ${rate(await tensormap({ threads }))}`);
console.log(`tensormap warm by reader threads (default min(8, cores)) — ${sweep.join(", ")}`);
if (!exact) process.exit(1);
