/**
 * The GPU check and benchmark (issue 18): does a generated ~8 GB bf16 checkpoint arrive on the GPU byte for byte,
 * and how fast, next to the pinned host→device ceiling and Python's loaders measured in this same run.
 *
 *   bun bench/gpu.ts              on the GPU machine: one command, under 5 minutes, one table (bench/gpu.md)
 *   bun bench/gpu.ts --dry-run    anywhere: the same code on the fakecudart stand-in, a small checkpoint, peers on CPU
 *
 * Options: --gb 8 --shards 4 --reps 3 --threads N --budget 270 (seconds; optional rows past it are skipped)
 *   --data DIR --python python3 --device cuda:0 --peer-device cuda:0 --pinned-mib 1024 --skip-peers REASON
 *   --no-drop-caches --json FILE. With $OUT set, gpu.json and gpu.md are written there.
 * Imports only src/, ffi/types.ts and node: builtins: the GPU machine has Bun but no node_modules.
 * Exit status: 0 when every check passed (a missed target is printed, not failed); 1 when a check failed (a
 * tensor's hash, a peer's load, the stand-in's report); 2 when it could not run (no usable GPU, bad arguments).
 */
import { spawnSync } from "node:child_process";
import { statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { CUDA } from "../ffi/types.ts";
import { check, Cleanup, deviceAlloc, hostAlloc, type CudaDevice } from "../src/device/cuda.ts";
import { loadToDevice, resolveDevice, type DeviceTarget } from "../src/device/load.ts";
import type { DeviceTensors } from "../src/device/tensors.ts";
import { digest, ensureCheckpoint, evict, fileTensors, HASH, hashFileTensors, layout, type FileTensor } from "./gpu-checkpoint.ts";
import { Peers, type PeerOp } from "./gpu-peers.ts";
import { runOnStandIn } from "./gpu-stand-in.ts";
import { rate, renderTable, writeResults, type Row } from "./gpu-report.ts";
import { DATA_DIR } from "./support.ts";

const SELF = fileURLToPath(import.meta.url);

/** Seconds past the budget after which the watchdog prints what was measured and ends the run. */
const WATCHDOG_MARGIN_S = 150;

/** The issue's goals for the run on a GPU. */
const TARGET = { ofPinned: 0.9, vsLoadFile: 5, firstMs: 20 };

interface Settings {
  dryRun: boolean;
  /** Set by --dry-run for its child: the device is the stand-in, so the title says the times mean nothing. */
  standIn: boolean;
  gb: number;
  shards: number;
  reps: number;
  threads?: number;
  budgetS: number;
  data: string;
  /** Default python3 (in a dry run: the peers venv). */
  python?: string;
  device: string;
  peerDevice: string;
  pinnedBytes: number;
  skipPeers?: string;
  dropCaches: boolean;
  json?: string;
}

function settings(): Settings {
  const { values: v } = parseArgs({
    options: {
      "dry-run": { type: "boolean", default: false },
      "stand-in": { type: "boolean", default: false },
      gb: { type: "string" },
      shards: { type: "string", default: "4" },
      reps: { type: "string", default: "3" },
      threads: { type: "string" },
      budget: { type: "string", default: "270" },
      data: { type: "string" },
      python: { type: "string" },
      device: { type: "string", default: "cuda:0" },
      "peer-device": { type: "string" },
      "pinned-mib": { type: "string" },
      "skip-peers": { type: "string" },
      "no-drop-caches": { type: "boolean", default: false },
      json: { type: "string" },
    },
  });
  const num = (name: string, text: string | undefined, fallback: number) => {
    const n = text === undefined ? fallback : Number(text);
    if (!(n > 0)) usage(`--${name} must be a positive number, got ${text}`);
    return n;
  };
  // A dry run copies through the stand-in on this machine's few cores: a small checkpoint and ceiling buffer.
  const dryRun = v["dry-run"]!;
  const gb = num("gb", v.gb, dryRun ? 0.25 : 8);
  return {
    dryRun,
    standIn: v["stand-in"]!,
    gb,
    shards: Math.round(num("shards", v.shards, 4)),
    reps: Math.round(num("reps", v.reps, 3)),
    threads: v.threads === undefined ? undefined : Math.round(num("threads", v.threads, 1)),
    budgetS: num("budget", v.budget, 270),
    data: v.data ?? join(DATA_DIR, `gpu-${gb}gb`),
    python: v.python,
    device: v.device!,
    peerDevice: v["peer-device"] ?? v.device!,
    pinnedBytes: num("pinned-mib", v["pinned-mib"], dryRun ? 64 : 1024) * 2 ** 20,
    skipPeers: v["skip-peers"],
    dropCaches: !v["no-drop-caches"],
    json: v.json,
  };
}

function usage(message: string): never {
  console.error(`bench/gpu.ts: ${message}`);
  process.exit(2);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const gbText = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

// ---- one run's state ----------------------------------------------------------------------------------------

interface Run {
  s: Settings;
  started: number;
  device: CudaDevice;
  dir: string;
  files: string[];
  ptFiles?: string[];
  tensors: FileTensor[];
  hashes: Map<string, string>;
  bytes: number;
  /** Bytes of the first tensor the load walks (the first shard's lowest offset): its landing is "first tensor". */
  firstBytes: number;
  rows: Row[];
  failures: string[];
  notes: string[];
  /** How each cold run evicted its files (posix_fadvise, or drop_caches too). */
  evictions: Set<string>;
  /** Bytes this process copied each way, to match against the stand-in's count in a dry run. */
  h2dBytes: number;
  d2hBytes: number;
  verifySeconds: number;
  coldGbps?: number;
  peers?: Peers;
  peerReason?: string;
  /** The default mode's rows (pinned ring, default threads), which the targets and the ratios judge. */
  ring: Partial<Record<"warm" | "cold", Row>>;
}

/** Adds a row to the table and says so at once: a run that hangs later still leaves its figures in the log. */
function push(run: Run, ...rows: Row[]): void {
  for (const row of rows) {
    run.rows.push(row);
    const figures = row.seconds === undefined ? "" : ` ${row.seconds.toFixed(3)} s, ${rate(row)?.toFixed(2) ?? "?"} GB/s`;
    const at = ((performance.now() - run.started) / 1000).toFixed(0).padStart(4);
    console.log(`[${at} s] ${row.loader}${row.cache ? ` ${row.cache}` : ""}:${figures}${row.gbps ? ` ${row.gbps.toFixed(2)} GB/s` : ""} ${[row.check, row.note].filter(Boolean).join("; ")}`);
  }
}

const secondsLeft = (run: Run) => run.s.budgetS - (performance.now() - run.started) / 1000;

/** Whether a row estimated at `needS` seconds fits the time budget; a row that does not is kept, marked skipped. */
function fits(run: Run, row: Row, needS: number): boolean {
  const left = secondsLeft(run);
  if (needS <= left) return true;
  row.note = `skipped: needs ~${needS.toFixed(0)} s, ${Math.max(0, left).toFixed(0)} s left of the ${run.s.budgetS} s budget`;
  return false;
}

// ---- the ceiling: pinned host→device copies in this process -------------------------------------------------

/** Median rate of single `cudaMemcpyAsync` copies of one pinned buffer (each synchronized), after a warm-up copy. */
function pinnedCeiling(run: Run): Row {
  const { cuda } = run.device;
  const size = run.s.pinnedBytes;
  const cleanup = new Cleanup();
  try {
    const host = hostAlloc(cuda, size, cleanup);
    const dev = deviceAlloc(run.device, size, cleanup);
    const out = new BigUint64Array(1);
    check(cuda, cuda.cudaStreamCreateWithFlags(out, CUDA.streamNonBlocking), "cudaStreamCreateWithFlags");
    const stream = out[0]!;
    cleanup.add(() => check(cuda, cuda.cudaStreamDestroy(stream), "cudaStreamDestroy"));
    const copy = () => {
      const t0 = performance.now();
      check(cuda, cuda.cudaMemcpyAsync(dev, host, BigInt(size), CUDA.memcpyHostToDevice, stream), "cudaMemcpyAsync");
      check(cuda, cuda.cudaStreamSynchronize(stream), "cudaStreamSynchronize");
      run.h2dBytes += size;
      return (performance.now() - t0) / 1000;
    };
    copy();
    const seconds = median(Array.from({ length: Math.max(5, run.s.reps) }, copy));
    return { loader: `pinned cudaMemcpyAsync ${size >> 20} MiB`, cache: "", seconds, bytes: size, note: "the ceiling" };
  } finally {
    cleanup.run();
  }
}

// ---- tensormap ------------------------------------------------------------------------------------------------

interface Mode {
  label: string;
  hostRegister: boolean;
  threads?: number;
}

interface Loaded {
  seconds: number;
  /** From the call (open included) to the first tensor's last byte on the device. */
  firstMs: number;
  weights: DeviceTensors;
}

async function tensormapLoad(run: Run, mode: Mode): Promise<Loaded> {
  let firstMs: number | undefined;
  const t0 = performance.now();
  const weights = await loadToDevice(run.dir, {
    device: run.s.device,
    threads: mode.threads ?? run.s.threads,
    hostRegister: mode.hostRegister,
    onProgress: (p) => {
      if (firstMs === undefined && p.bytesDone >= run.firstBytes) firstMs = performance.now() - t0;
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  run.h2dBytes += run.bytes;
  return { seconds, firstMs: firstMs ?? seconds * 1000, weights };
}

/** Copies every tensor back (toHost) and compares its hash with the file's; a difference is a failure of the run. */
function verify(run: Run, label: string, weights: DeviceTensors): string {
  const t0 = performance.now();
  const bad: string[] = [];
  if (weights.size !== run.hashes.size) bad.push(`${weights.size} tensors loaded of ${run.hashes.size}`);
  for (const [name, want] of run.hashes) {
    if (!weights.has(name)) {
      bad.push(`${name} missing`);
      continue;
    }
    const back = weights.toHost(name);
    run.d2hBytes += back.byteLength;
    if (digest(back) !== want) bad.push(name);
  }
  run.verifySeconds = (performance.now() - t0) / 1000;
  const n = run.hashes.size;
  if (!bad.length) return `${n}/${n} ${HASH} ok`;
  run.failures.push(`${label}: ${bad.length} tensors differ from the files (${bad.slice(0, 3).join(", ")}${bad.length > 3 ? ", …" : ""})`);
  return `MISMATCH ${bad.length}/${n}`;
}

/** One load; `use` sees its tensors, which are freed after, whatever happens. */
async function withLoad<T>(run: Run, mode: Mode, use: (l: Loaded) => T): Promise<T> {
  const l = await tensormapLoad(run, mode);
  try {
    return use(l);
  } finally {
    l.weights.free();
  }
}

/**
 * Warm rows of one mode: a first load (verified; for the default mode a row of its own, since it allocates the
 * pinned ring that later loads reuse), then the median of `reps` loads.
 */
async function tensormapWarm(run: Run, mode: Mode): Promise<{ first: Row; warm: Row }> {
  const first: Row = { loader: `${mode.label}, first load`, cache: "warm", bytes: run.bytes, note: "allocates the pinned ring later loads reuse" };
  const warm: Row = { loader: mode.label, cache: "warm", bytes: run.bytes };
  await guarded(run, warm, async () => {
    await withLoad(run, mode, (l) => {
      Object.assign(first, { seconds: l.seconds, firstMs: l.firstMs });
      first.check = warm.check = verify(run, `${mode.label} warm`, l.weights);
    });
    const samples: Loaded[] = [];
    for (let i = 0; i < run.s.reps; i++) samples.push(await withLoad(run, mode, (l) => l));
    warm.seconds = median(samples.map((l) => l.seconds));
    warm.firstMs = median(samples.map((l) => l.firstMs));
  });
  return { first, warm };
}

/** Seconds a cold read of the checkpoint is expected to take: the first cold load's rate, else 1 GB/s. */
const coldReadS = (run: Run) => run.bytes / ((run.coldGbps ?? 1) * 1e9);

function tensormapCold(run: Run, mode: Mode): Promise<Row> {
  const row: Row = { loader: mode.label, cache: "cold", bytes: run.bytes };
  if (!fits(run, row, coldReadS(run) + run.verifySeconds + 2)) return Promise.resolve(row);
  return guarded(run, row, async () => {
    await evictFor(run, run.files, row);
    await withLoad(run, mode, (l) => {
      Object.assign(row, { seconds: l.seconds, firstMs: l.firstMs });
      row.check = verify(run, `${mode.label} cold`, l.weights);
    });
    run.coldGbps ??= rate(row);
  });
}

/** Runs a row's measurement; a failure fails the run and says why in the row (the other rows still run). */
async function guarded(run: Run, row: Row, measure: () => Promise<void>): Promise<Row> {
  try {
    await measure();
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    row.note = [row.note, `FAILED: ${why}`].filter(Boolean).join("; ");
    run.failures.push(`${row.loader}${row.cache ? ` ${row.cache}` : ""}: ${why}`);
  }
  return row;
}

/** Evicts the files a cold row reads; the row says so when the page cache did not shrink by about their size. */
async function evictFor(run: Run, files: string[], row: Row): Promise<void> {
  const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
  const e = await evict(files, bytes, run.s.dropCaches);
  run.evictions.add(e.method);
  if (!e.verified) row.note = `not cold? the page cache fell by only ${gbText(e.droppedBytes)} of ${gbText(bytes)}`;
}

// ---- Python peers -------------------------------------------------------------------------------------------

const PEERS: { op: PeerOp; loader: string; pt?: true }[] = [
  { op: "load_file", loader: "safetensors load_file" },
  { op: "safe_open", loader: "safetensors safe_open" },
  { op: "torch_load", loader: "torch.load (.pt)", pt: true },
];

/** The tensors a peer hashes: the first and last of every shard (hashing all in Python would take longer than the load). */
function sampled(run: Run): string[] {
  return run.files.flatMap((f) => {
    const own = run.tensors.filter((t) => t.file === f);
    return [own[0]!.name, own.at(-1)!.name];
  });
}

/** One peer load, checked: every byte there (count and size) and the sampled tensors' hashes equal to the file's. */
async function peerLoad(run: Run, op: PeerOp, files: string[], hash: boolean): Promise<{ seconds: number; firstMs: number; check: string }> {
  const names = hash ? sampled(run) : [];
  const r = await run.peers!.load(op, files, names);
  const wrong: string[] = [];
  if (r.bytes !== run.bytes || r.tensors !== run.hashes.size) wrong.push(`${r.tensors} tensors, ${r.bytes} bytes loaded`);
  for (const name of names) if (r.hashes[name] !== run.hashes.get(name)) wrong.push(`${name} differs`);
  if (wrong.length) throw new Error(wrong.join("; "));
  return { seconds: r.seconds, firstMs: r.first_seconds * 1000, check: hash ? `${names.length} sampled ${HASH} ok` : "" };
}

function peerFiles(run: Run, pt: boolean | undefined): string[] | string {
  if (!pt) return run.files;
  return run.ptFiles ?? "no .pt copies (see above)";
}

/** A row that needs the Python peers: skipped (with the reason) without them. */
function withPeers(run: Run, row: Row, measure: () => Promise<void>): Promise<Row> {
  if (!run.peers) return Promise.resolve({ ...row, note: `skipped: ${run.peerReason}` });
  return guarded(run, row, measure);
}

/** Median of up to `reps` loads, fewer when a peer is slow (at least one, stopping once 20 s went by). */
function peerWarm(run: Run, p: (typeof PEERS)[number]): Promise<Row> {
  const row: Row = { loader: p.loader, cache: "warm", bytes: run.bytes };
  return withPeers(run, row, async () => {
    const files = peerFiles(run, p.pt);
    if (typeof files === "string") throw new Error(files);
    const t0 = performance.now();
    const samples = [await peerLoad(run, p.op, files, true)];
    while (samples.length < run.s.reps && performance.now() - t0 < 20_000) samples.push(await peerLoad(run, p.op, files, false));
    row.seconds = median(samples.map((s) => s.seconds));
    row.firstMs = median(samples.map((s) => s.firstMs));
    row.check = samples[0]!.check;
    if (samples.length < run.s.reps) row.note = `${samples.length} of ${run.s.reps} reps (slow)`;
  });
}

function peerCold(run: Run, p: (typeof PEERS)[number], warm: Row): Promise<Row> {
  const row: Row = { loader: p.loader, cache: "cold", bytes: run.bytes };
  if (run.peers && warm.seconds === undefined) return Promise.resolve({ ...row, note: "skipped: the warm load failed" });
  if (run.peers && !fits(run, row, Math.max(warm.seconds ?? 0, coldReadS(run)) + 2)) return Promise.resolve(row);
  return withPeers(run, row, async () => {
    const files = peerFiles(run, p.pt) as string[];
    await evictFor(run, files, row);
    const r = await peerLoad(run, p.op, files, true);
    Object.assign(row, { seconds: r.seconds, firstMs: r.firstMs, check: r.check });
  });
}

// ---- the run --------------------------------------------------------------------------------------------------

/**
 * The device to measure. pip's torch brings its own libcudart (site-packages/nvidia/…), outside the library
 * path: when the usual lookup finds none, use the one torch loads.
 */
async function findDevice(s: Settings): Promise<DeviceTarget | Error> {
  const first = await resolveDevice(s.device).catch((e: Error) => e);
  if (!(first instanceof Error) || !/libcudart not found/.test(first.message) || process.env.TENSORMAP_CUDART) return first;
  const script = "import torch\ntorch.cuda.init()\nprint(next(l.split()[-1] for l in open('/proc/self/maps') if 'libcudart' in l))";
  const r = spawnSync(s.python ?? "python3", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) return first;
  process.env.TENSORMAP_CUDART = r.stdout.trim().split("\n").at(-1)!;
  console.log(`libcudart from torch: ${process.env.TENSORMAP_CUDART}`);
  return resolveDevice(s.device).catch((e: Error) => e);
}

/** Writes (or reuses) the checkpoint, hashes it from the files, and has the peers make their .pt copies meanwhile. */
async function prepare(run: Run, peers: Promise<Peers | Error>): Promise<void> {
  const plan = layout(run.s.gb);
  const written = await ensureCheckpoint(run.dir, plan, run.s.shards);
  run.files = written.shards;
  run.tensors = run.files.flatMap(fileTensors);
  run.bytes = plan.bytes;
  run.firstBytes = run.tensors[0]!.byteLength;
  const how = written.reused ? "reused" : `written in ${written.seconds.toFixed(1)} s`;
  run.notes.push(`checkpoint: ${run.dir}, ${gbText(run.bytes)} bf16, ${run.tensors.length} tensors in ${run.files.length} shards (${how})`);
  const started = await peers;
  if (started instanceof Error) run.peerReason = started.message;
  else run.peers = started;
  const pt = run.peers?.makePt(run.files);
  const t0 = performance.now();
  run.hashes = hashFileTensors(run.tensors);
  run.notes.push(`file hashes: ${run.hashes.size} tensors, ${HASH}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const made = await pt;
    if (made) {
      run.ptFiles = made.files;
      run.notes.push(`torch.save copies: ${made.made ? `${made.made} written in ${made.seconds.toFixed(1)} s` : "reused"}`);
    }
  } catch (e) {
    run.failures.push(`torch.save copies: ${(e as Error).message}`);
  }
}

/** Fills in each peer row's ratio and the targets beside the rows they judge. */
function judge(run: Run): { goal: string; value: string; met: boolean }[] {
  const pinned = run.rows[0] && rate(run.rows[0]);
  for (const row of run.rows) {
    const ours = row.cache ? run.ring[row.cache]?.seconds : undefined;
    if (!row.loader.startsWith("tensormap") && row.seconds !== undefined && ours) row.tensormapFaster = row.seconds / ours;
  }
  const targets: { goal: string; value: string; met: boolean }[] = [];
  const add = (row: Row, goal: string, value: number | undefined, met: (v: number) => boolean, show: (v: number) => string) => {
    if (value === undefined || !Number.isFinite(value)) return;
    const t = { goal, value: show(value), met: met(value) };
    targets.push(t);
    row.target = [row.target, `${goal}: ${t.value} ${t.met ? "met" : "MISSED"}`].filter(Boolean).join("; ");
  };
  const warm = run.ring.warm;
  if (warm) {
    const share = pinned && rate(warm) ? rate(warm)! / pinned : undefined;
    add(warm, `≥ ${TARGET.ofPinned * 100}% of pinned`, share, (v) => v >= TARGET.ofPinned, (v) => `${(100 * v).toFixed(0)}%`);
    add(warm, `first tensor ≤ ${TARGET.firstMs} ms`, warm.firstMs, (v) => v <= TARGET.firstMs, (v) => `${v.toFixed(1)} ms`);
  }
  const loadFile = run.rows.find((r) => r.loader === PEERS[0]!.loader && r.cache === "warm");
  if (loadFile) add(loadFile, `tensormap ≥ ${TARGET.vsLoadFile}× load_file`, loadFile.tensormapFaster, (v) => v >= TARGET.vsLoadFile, (v) => `${v.toFixed(2)}×`);
  return targets;
}

async function bench(s: Settings): Promise<number> {
  const started = performance.now();
  const target = await findDevice(s);
  if (target instanceof Error || target.kind !== "cuda") return usage(`needs a GPU: ${target instanceof Error ? target.message : target.reason}`);
  console.log(`device: ${target.reason}${process.env.TENSORMAP_CUDART ? ` (${process.env.TENSORMAP_CUDART})` : ""}`);
  // torch imports while the checkpoint is written.
  const peers = s.skipPeers ? Promise.resolve(new Error(s.skipPeers)) : Peers.start(s.python ?? "python3", s.peerDevice).catch((e: Error) => e);
  const run: Run = {
    s, started, device: target.device, dir: s.data, files: [], tensors: [], hashes: new Map(), bytes: 0, firstBytes: 0,
    rows: [], failures: [], notes: [], evictions: new Set(), h2dBytes: 0, d2hBytes: 0, verifySeconds: 0, ring: {},
  };
  // A load that never finishes must not cost the whole GPU session: past the budget and a margin, print what
  // was measured and fail (timers still run while a load waits on its copies).
  const watchdog = setTimeout(() => {
    run.failures.push(`watchdog: still running ${s.budgetS + WATCHDOG_MARGIN_S} s after the start; the table has the rows measured so far`);
    process.exit(report(run));
  }, (s.budgetS + WATCHDOG_MARGIN_S) * 1000);
  try {
    await prepare(run, peers);
    if (run.peers) {
      const i = run.peers.info;
      run.notes.push(`peers: python ${i.python}, torch ${i.torch}, safetensors ${i.safetensors} on ${i.device}${i.gpu ? ` (${i.gpu})` : ""}`);
    } else if (!s.skipPeers) run.failures.push(`peers: ${run.peerReason}`);
    await measure(run);
    return report(run);
  } finally {
    clearTimeout(watchdog);
    run.peers?.close();
  }
}

/** torch's own pinned copy rate: if it and ours differ much, the ceiling (not the loader) is what to look at. */
function torchPinned(run: Run): Promise<Row> {
  const row: Row = { loader: `torch pinned copy_ ${run.s.pinnedBytes >> 20} MiB`, cache: "", note: "cross-check of the ceiling" };
  if (run.peers && !run.s.peerDevice.startsWith("cuda")) return Promise.resolve({ ...row, note: `skipped: peers on ${run.s.peerDevice}` });
  return withPeers(run, row, async () => {
    row.gbps = (await run.peers!.pinned(run.s.pinnedBytes, Math.max(5, run.s.reps))).gbps;
  });
}

/**
 * Every row, in table order: the ceilings, tensormap and the peers from a warm page cache, then cold ones and
 * other reader-thread counts as the budget allows.
 */
async function measure(run: Run): Promise<void> {
  push(run, pinnedCeiling(run));
  push(run, await torchPinned(run));
  const ringMode: Mode = { label: `tensormap ring (${run.s.threads ? `${run.s.threads} threads` : "default threads"})`, hostRegister: false };
  const registerMode: Mode = { label: "tensormap hostRegister", hostRegister: true };
  const ring = await tensormapWarm(run, ringMode);
  run.ring.warm = ring.warm;
  push(run, ring.first, ring.warm);
  push(run, (await tensormapWarm(run, registerMode)).warm);
  const warmPeers: Row[] = [];
  for (const p of PEERS) {
    warmPeers.push(await peerWarm(run, p));
    push(run, warmPeers.at(-1)!);
  }
  run.ring.cold = await tensormapCold(run, ringMode);
  push(run, run.ring.cold);
  push(run, await tensormapCold(run, registerMode));
  for (const [i, p] of PEERS.entries()) push(run, await peerCold(run, p, warmPeers[i]!));
  // Reader threads are the knob once the file is cached (the default is min(8, cores); the GPU machine has 16).
  for (const threads of [4, 16].filter((n) => n !== run.s.threads)) {
    const row: Row = { loader: `tensormap ring (${threads} threads)`, cache: "warm", bytes: run.bytes };
    const needS = (ring.warm.seconds ?? 1) * (run.s.reps + 1) + run.verifySeconds + 2;
    push(run, fits(run, row, needS) ? (await tensormapWarm(run, { ...ringMode, label: row.loader, threads })).warm : row);
  }
}

/** Prints the notes, the table, the targets and the failures; writes them as JSON (and markdown) where asked. */
function report(run: Run): number {
  run.notes.push(`cold runs evicted with: ${[...run.evictions].join("; ") || "none ran"}`);
  const targets = judge(run);
  const pinned = run.rows[0] && rate(run.rows[0]);
  const { text, markdown } = renderTable(run.rows, pinned);
  const title = run.s.standIn
    ? "tensormap GPU bench: DRY RUN on the fakecudart stand-in (checks are real; the times say nothing about a GPU)"
    : `tensormap GPU bench on ${run.peers?.info.gpu ?? run.device.name}`;
  const seconds = (performance.now() - run.started) / 1000;
  const summary = [
    `targets: ${targets.map((t) => `${t.goal}: ${t.value} ${t.met ? "met" : "MISSED"}`).join(" · ") || "none measured"}`,
    run.failures.length ? `FAILED checks (${run.failures.length}):\n${run.failures.map((f) => `  - ${f}`).join("\n")}` : "checks: all passed",
    `${seconds.toFixed(0)} s in all (budget ${run.s.budgetS} s); Bun ${process.versions.bun ?? "?"}; ${availableParallelism()} cores`,
  ];
  console.log(`\n${title}\n${run.notes.map((n) => `  ${n}`).join("\n")}\n\n${text}\n\n${summary.join("\n")}`);
  const json = {
    title, notes: run.notes, settings: run.s, rows: run.rows.map((r) => ({ ...r, gbps: rate(r) })), targets, failures: run.failures,
    copied: { h2dBytes: run.h2dBytes, d2hBytes: run.d2hBytes }, seconds,
  };
  const md = `## ${title}\n\n${run.notes.map((n) => `- ${n}`).join("\n")}\n\n${markdown}\n\n${summary.map((l) => `${l}  `).join("\n")}`;
  if (run.s.json) writeFileSync(run.s.json, JSON.stringify(json));
  if (process.env.OUT) console.log(`wrote ${writeResults(process.env.OUT, json, md).join(", ")}`);
  return run.failures.length ? 1 : 0;
}

/** The arguments that run this same benchmark small on the stand-in (peers on CPU, no drop_caches: not our machine). */
function dryRunArgs(s: Settings): string[] {
  return [
    "--stand-in", "--gb", String(s.gb), "--shards", String(s.shards), "--reps", String(s.reps), "--budget", String(s.budgetS),
    "--pinned-mib", String(s.pinnedBytes / 2 ** 20), "--data", s.data, "--device", s.device, "--peer-device", "cpu", "--no-drop-caches",
    ...(s.threads ? ["--threads", String(s.threads)] : []),
  ];
}

const s = settings();
// An unexpected failure (the checkpoint cannot be written, say) still ends with a status, not a hang.
const status = await (s.dryRun ? runOnStandIn(SELF, dryRunArgs(s), s.skipPeers ? { reason: s.skipPeers } : s.python ? { path: s.python } : undefined) : bench(s)).catch((e: unknown) => {
  console.error(`bench/gpu.ts failed: ${e instanceof Error ? e.stack : String(e)}`);
  return 1;
});
process.exit(status);
