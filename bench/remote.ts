/**
 * How fast does a remote checkpoint load? nginx on loopback behind a proxy (bench/first-byte-delay.ts) emulates
 * object storage: each request held 20 ms (first-byte latency), each connection paced to 80 MB/s.
 * Timed until every tensor is in memory, all in one run, interleaved, best of `--runs`: tensormap's
 * `loadToDevice(url, { device: "cpu" })`, `curl` in one stream to a file, boto3's `download_file` (its threaded
 * transfer manager) then `safetensors.torch.load_file`, and huggingface_hub's `hf_hub_download` (`HF_ENDPOINT` at
 * nginx's Hub-style path) then `load_file`. Also: the requests tensormap's `open()` makes (header only); and
 * tensormap's s3:// and boto3 from the tests' S3-compatible server (s3rver, SigV4-checking, unpaced). Not a test.
 *
 *   bun bench/remote.ts                         # the 1.1B-parameter bf16 file (2.2 GB, bench/data/, git-ignored)
 *   bun bench/remote.ts --layers 4 --runs 1     # a smaller file (embeddings, 4 layers, head: 0.6 GB)
 *   bun bench/remote.ts --rate 80 --delay 20    # per-connection cap (MB/s) and first-byte delay (ms)
 *   bun bench/remote.ts --no-s3rver             # without the s3rver rows (it copies the file into its store)
 *
 * The Python peers come from ../shared/tools/peers-venv (bench/remote_peers.py times them inside Python).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../ffi/runtime.ts";
import { open, openCheckpoint } from "../src/checkpoint/open.ts";
import { loadToDevice } from "../src/device/load.ts";
import { partsInFlight, resolveRemoteOptions } from "../src/io/remote/options.ts";
import { S3_CREDENTIALS, startS3Server, type S3Server } from "../test/support/s3-server.ts";
import { startNginx, type Nginx } from "../test/support/servers.ts";
import { generated, peersPython, writeTinyLlama } from "./support.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const self = fileURLToPath(import.meta.url);
/** The commit nginx's Hub-style path names (`X-Repo-Commit`), as the Hub does for `main`. */
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? process.argv[at + 1]! : fallback;
}

// ---- workers: one measurement each, in a process of its own ------------------------------------------------

async function worker(mode: string, url: string, partBytes?: number): Promise<void> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (mode === "open") {
    using file = await open(url);
    console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, tensors: file.keys().length }));
    return;
  }
  let bytes = 0;
  if (mode === "prefetch") {
    // The fetch layer alone: every tensor fetched into memory, then each one's bytes taken.
    using model = await openCheckpoint(url, { remote: { partBytes } });
    await model.prefetch();
    for (const name of model.keys()) bytes += model.tensor(name).bytes.byteLength;
  } else {
    using weights = await loadToDevice(url, { device: "cpu", remote: { partBytes } });
    for (const [, t] of weights) bytes += t.byteLength;
  }
  const seconds = (performance.now() - t0) / 1000;
  const { user, system } = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ seconds, cpu: (user + system) / 1e6, bytes }));
}

// ---- the run --------------------------------------------------------------------------------------------

interface Contender {
  label: string;
  /** Served by s3rver, outside the emulation: no share of its bandwidth. */
  s3rver?: boolean;
  /** Connections it downloads over: what its share of the emulated bandwidth is. */
  streams: number;
  run(): Promise<Measurement>;
}

interface Measurement {
  seconds: number;
  /** Of which downloading (a download-then-load peer). */
  download?: number;
  /** CPU seconds the contender's own process spent (user + system, every thread), where it says. */
  cpu?: number;
  /** Bytes nginx sent for it, over the file's size. */
  fetched?: number;
}

/** Runs a command to its end; resolves to its stdout, rejects with its last lines of stderr. */
function exec(argv: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: root, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let [out, err] = ["", ""];
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => (code === 0 ? done(out) : fail(new Error(`${argv.join(" ")} failed (${code}): ${err.trim().split("\n").slice(-3).join(" | ")}`))));
  });
}

/** A worker's measurement: the last line it prints. */
const measured = async (argv: string[], env: Record<string, string> = {}): Promise<Measurement> => JSON.parse((await exec(argv, env)).trim().split("\n").pop()!);

const jsArgv = (...args: string[]) => (runtime === "deno" ? [process.execPath, "run", "-A", ...args] : [process.execPath, ...args]);

/** The emulating proxy in front of nginx (`bytesPerSecond` 0: unpaced); resolves to its URL. */
async function startStorageProxy(upstreamPort: number, delayMs: number, bytesPerSecond: number): Promise<{ url: string; stop(): void }> {
  const [bin, ...args] = jsArgv(join(here, "first-byte-delay.ts"), String(upstreamPort), String(delayMs), String(bytesPerSecond));
  const child = spawn(bin!, args, { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((done, fail) => {
    child.stdout!.once("data", (d) => done(JSON.parse(String(d)).port));
    child.once("exit", (code) => fail(new Error(`the delaying proxy exited (${code})`)));
  });
  return { url: `http://127.0.0.1:${port}`, stop: () => void child.kill() };
}

/** Loopback's capacity through the same proxy and nginx, unpaced: `streams` curls, one range each, in parallel. */
async function loopbackBytesPerSecond(url: string, size: number, streams: number): Promise<number> {
  const t0 = performance.now();
  const step = Math.ceil(size / streams);
  await Promise.all(
    Array.from({ length: streams }, (_, i) => exec(["curl", "-sf", "-o", "/dev/null", "-r", `${i * step}-${Math.min(size, (i + 1) * step) - 1}`, url])),
  );
  return size / ((performance.now() - t0) / 1000);
}

/** nginx's access log so far (its `combined` format): requests, and body bytes sent. */
function served(log: string): { requests: number; bytes: number } {
  const lines = existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
  return { requests: lines.length, bytes: lines.reduce((n, l) => n + Number(/" \d{3} (\d+) "/.exec(l)?.[1] ?? 0), 0) };
}

async function main(): Promise<void> {
  const [mode, target, part] = process.argv.slice(2);
  if (mode?.startsWith("--worker-")) return worker(mode.slice("--worker-".length), target!, Number(part) || undefined);
  const layers = Number(flag("layers", "22"));
  const perConnection = Number(flag("rate", "80")) * 1e6;
  const delayMs = Number(flag("delay", "20"));
  const runs = Number(flag("runs", "3"));

  const file = await generated(layers === 22 ? "llama-1.1B-bf16.safetensors" : `llama-${layers}layers-bf16.safetensors`, (p) => writeTinyLlama(p, layers));
  const size = statSync(file).size;
  const peers = peersPython();
  const python = "path" in peers ? peers.path : undefined;
  const hasPython = !!python && existsSync(python);

  const log = join(mkdtempSync(join(tmpdir(), "tensormap-bench-remote-")), "access.log");
  // /scratch/model.safetensors is the file, also as bucket "scratch" (path-style) and at a Hub-style path.
  const nginx: Nginx = await startNginx({
    extra: (served) => `access_log ${log};
    location ~ ^/hub/bench/llama/resolve/[^/]+/(.+)$ { alias ${served}/scratch/$1; add_header X-Repo-Commit ${COMMIT} always; }`,
  });
  symlinkSync(file, join(nginx.scratch, "model.safetensors"));
  const paced = await startStorageProxy(nginx.port, delayMs, perConnection);
  const unpaced = await startStorageProxy(nginx.port, delayMs, 0);
  const base = paced.url;
  const url = `${base}/scratch/model.safetensors`;
  const s3: S3Server | undefined = process.argv.includes("--no-s3rver") ? undefined : await startS3Server({ bench: { "model.safetensors": file } });
  // One download at a time on disk: each run's folder replaces the last (a 2.2 GB file per run adds up).
  let downloads: string | undefined;
  const fresh = () => {
    if (downloads) rmSync(downloads, { recursive: true, force: true });
    return (downloads = mkdtempSync(join(tmpdir(), "tensormap-bench-downloads-")));
  };
  try {
    const streams = partsInFlight(resolveRemoteOptions());
    const tensormap = (partMiB: number): Contender => ({
      label: `tensormap loadToDevice cpu, ${partMiB} MiB parts (${runtime})`,
      streams,
      run: () => measured(jsArgv(self, "--worker-load", url, String(partMiB << 20))),
    });
    const contenders: Contender[] = [
      tensormap(resolveRemoteOptions().partBytes >> 20),
      tensormap(16),
      {
        label: `tensormap openCheckpoint + prefetch, 8 MiB parts (${runtime})`,
        streams,
        run: () => measured(jsArgv(self, "--worker-prefetch", url)),
      },
      {
        label: "curl, one stream, to a file",
        streams: 1,
        run: async () => {
          const dir = fresh();
          const r = spawnSync("curl", ["-sf", "-o", join(dir, "model.safetensors"), "-w", "%{time_total}", url], { encoding: "utf8" });
          if (r.status !== 0) throw new Error(`curl failed: ${r.stderr}`);
          return { seconds: Number(r.stdout) };
        },
      },
    ];
    if (hasPython) {
      contenders.push({
        label: "boto3 download_file (10 threads) + load_file",
        streams: 10,
        run: () => measured([python!, join(here, "remote_peers.py"), "boto3", base, "scratch", "model.safetensors", fresh()], { AWS_ACCESS_KEY_ID: "bench", AWS_SECRET_ACCESS_KEY: "bench" }),
      });
      contenders.push({
        label: "hf_hub_download + load_file",
        streams: 1,
        run: () => measured([python!, join(here, "remote_peers.py"), "hub", "bench/llama", "model.safetensors", fresh()], { HF_ENDPOINT: `${base}/hub`, HF_HUB_DISABLE_TELEMETRY: "1", HF_HUB_DISABLE_XET: "1" }),
      });
    }

    if (s3) {
      const signed = { AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey };
      contenders.push({
        label: `tensormap s3:// from s3rver (${runtime})`,
        s3rver: true,
        streams,
        run: () => measured(jsArgv(self, "--worker-load", "s3://bench/model.safetensors"), { ...signed, AWS_ENDPOINT_URL_S3: s3.endpoint }),
      });
      if (hasPython) {
        contenders.push({
          label: "boto3 from s3rver + load_file",
          s3rver: true,
          streams: 10,
          run: () => measured([python!, join(here, "remote_peers.py"), "boto3", s3.endpoint, "bench", "model.safetensors", fresh()], signed),
        });
      }
    }
    const loadBefore = loadavg()[0]!;
    const before = served(log).requests;
    await measured(jsArgv(self, "--worker-open", url));
    const openRequests = served(log).requests - before;

    const best = new Map<Contender, Measurement>();
    // Loopback is measured in every round too: on a shared machine it moves as much as the contenders do.
    let loopback = 0;
    for (let k = 0; k < runs; k++) {
      loopback = Math.max(loopback, await loopbackBytesPerSecond(`${unpaced.url}/scratch/model.safetensors`, size, streams));
      for (let i = 0; i < contenders.length; i++) {
        const c = contenders[(i + k) % contenders.length]!;
        const sent = served(log).bytes;
        const m = { ...(await c.run()), fetched: (served(log).bytes - sent) / size };
        console.error(`  ${c.label}: ${m.seconds.toFixed(2)} s`);
        if (!(m.seconds >= (best.get(c)?.seconds ?? Infinity))) best.set(c, m);
      }
    }

    const gb = size / 1e9;
    const rateMBs = (perConnection / 1e6).toFixed(1);
    console.log(`\n${gb.toFixed(2)} GB, ${layers} layers, bf16; emulated storage: ${rateMBs} MB/s per connection, ${delayMs} ms to first byte;`);
    console.log(`loopback through the same proxy and nginx, unpaced, ${streams} streams: ${(loopback / 1e9).toFixed(2)} GB/s; best of ${runs}, ${runtime};`);
    console.log(`${cpus().length} cores, load average ${loadBefore.toFixed(1)} before and ${loadavg()[0]!.toFixed(1)} after`);
    console.log(`tensormap open() (header only): ${openRequests} request${openRequests === 1 ? "" : "s"}\n`);
    const tm = best.get(contenders[0]!)!.seconds;
    console.log(`| ${["contender", "s", "GB/s", "streams", "emulated GB/s", "% of emulated", "tensormap ×", "CPU s", "fetched × size"].join(" | ")} |`);
    console.log(`|${" --- |".repeat(9)}`);
    for (const c of contenders) {
      const m = best.get(c)!;
      const emulated = Math.min(c.streams * perConnection, loopback);
      // For download-then-load, the share of bandwidth counts the download only.
      const share = c.s3rver ? "—" : `${((size / (m.download ?? m.seconds) / emulated) * 100).toFixed(0)}%`;
      const cells = [c.label, m.seconds.toFixed(2) + (m.download ? ` (download ${m.download.toFixed(2)})` : ""), (gb / m.seconds).toFixed(2), String(c.streams)];
      cells.push(c.s3rver ? "—" : (emulated / 1e9).toFixed(2), share, c === contenders[0] ? "1.00" : (m.seconds / tm).toFixed(2), m.cpu?.toFixed(2) ?? "—", c.s3rver ? "—" : m.fetched!.toFixed(2));
      console.log(`| ${cells.join(" | ")} |`);
    }
  } finally {
    paced.stop();
    unpaced.stop();
    await s3?.stop();
    await nginx.stop();
    if (downloads) rmSync(downloads, { recursive: true, force: true });
    rmSync(dirname(log), { recursive: true, force: true });
  }
}

await main();
