/**
 * Loading checkpoints onto a device: `toDevice(file, opts)` for an open file, `loadToDevice(path, opts)` for a
 * file or a sharded directory. CUDA goes through the pinned ring ({@link PinnedRing}); `cpu`, and `auto` without a
 * usable GPU, return the host tensors in the same {@link DeviceTensors} shape with `device: "cpu"`.
 */
import { CUDA } from "../../ffi/types.ts";
import { loadLibc, type LibC } from "../io/libc.ts";
import { SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import type { Checkpoint, CheckpointFile } from "../checkpoint/checkpoint.ts";
import { openCheckpoint } from "../checkpoint/open.ts";
import { openMmap, touchPages, type Advice } from "../io/mmap.ts";
import { check, Cleanup, deviceAlloc, probeCuda, type CudaDevice } from "./cuda.ts";
import { quietly, yieldToLoop, type RingOptions } from "./pipeline.ts";
import { resolveRemoteOptions } from "../io/remote/options.ts";
import { isRemoteUrl } from "../io/remote/url.ts";
import { coalescedReads } from "./coalesced-reads.ts";
import { loadSlices, modelConfig, planParts, rankOf, ReadAhead, type RankLoadOptions, type RankPart } from "./rank-load.ts";
import { planGatherChunks, planPitchedCopies, splitBlocks } from "./tp-plan.ts";
import { withRing } from "./ring-cache.ts";
import { lastAtOrBefore } from "./sorted.ts";
import { layoutDevice, mappedRange, mappedSpans, planChunks, type Extent } from "./plan.ts";
import { parseDevice } from "./spec.ts";
import { DeviceTensors, type CudaTensor, type DeviceTensor } from "./tensors.ts";

export interface LoadProgress {
  /** The file being loaded now. */
  file: string;
  /** Bytes on the device (or read, on cpu) so far, over all files of the load. */
  bytesDone: number;
  bytesTotal: number;
}

export interface DeviceLoadOptions extends RingOptions, RankLoadOptions {
  /** `"cuda"`, `"cuda:N"`, `"cpu"` or `"auto"` (default): the GPU when one is usable, else cpu. */
  device?: string;
  /** Only these tensors (every one must exist). Default: all. */
  names?: string[];
  /** Called as bytes land, from the event loop (the loop stays responsive during a load). */
  onProgress?: (p: LoadProgress) => void;
  /** One `cudaMalloc` per tensor instead of one per file. */
  perTensor?: boolean;
  /** Map the file read-only, pin that mapping (`cudaHostRegister` ReadOnly) and let the copy engine read its pages. */
  hostRegister?: boolean;
  /** `loadToDevice`: reader threads filling the ring (default: min(8, CPU count)); `toDevice` reads as the checkpoint was opened. */
  threads?: number;
  /** Environment for the libcudart lookup (`TENSORMAP_CUDART`, `CUDA_HOME`); default `process.env`. */
  env?: Record<string, string | undefined>;
}

/** The device a load will use, and why. */
export type DeviceTarget = { kind: "cpu"; reason: string } | { kind: "cuda"; device: CudaDevice; reason: string };

/**
 * Resolves a device string to a usable target. An explicit CUDA device that cannot be used throws
 * `CudaUnavailable` naming the reason (the CUDA error name, or that libcudart was not found); `auto` falls back
 * to cpu and says why.
 *
 * @example
 * ```ts
 * import { resolveDevice } from "tensormap";
 * const t = await resolveDevice("auto");
 * console.log(t.kind, t.reason); // without a GPU: "cpu", "auto chose cpu: no usable GPU (cudaErrorInsufficientDriver: …)"
 * ```
 */
export async function resolveDevice(spec: string, env?: Record<string, string | undefined>): Promise<DeviceTarget> {
  const parsed = parseDevice(spec);
  if (parsed.kind === "cpu") return { kind: "cpu", reason: "cpu requested" };
  const index = parsed.kind === "cuda" ? parsed.index : 0;
  const probe = await probeCuda(index, env);
  if (probe.ok) {
    const d = probe.device;
    const how = `${d.count} CUDA device${d.count === 1 ? "" : "s"}, driver ${version(d.driverVersion)}, runtime ${version(d.runtimeVersion)}`;
    return { kind: "cuda", device: d, reason: `${parsed.kind === "auto" ? "auto chose" : "using"} ${d.name} (${how})` };
  }
  if (parsed.kind === "auto") return { kind: "cpu", reason: `auto chose cpu: no usable GPU (${probe.reason})` };
  throw new SafetensorsError("CudaUnavailable", `cuda:${index} is not usable: ${probe.reason}`);
}

/**
 * Loads an open checkpoint's tensors onto a device. The checkpoint stays open and owned by the caller; on cpu
 * the returned tensors are its own views (mmap) or copies (read).
 *
 * @example
 * ```ts
 * import { open, toDevice } from "tensormap";
 * using file = await open("model.safetensors");
 * using weights = await toDevice(file, { device: "auto", onProgress: (p) => console.log(p.bytesDone) });
 * ```
 */
export async function toDevice(checkpoint: Checkpoint, opts: DeviceLoadOptions = {}): Promise<DeviceTensors> {
  const target = await resolveDevice(opts.device ?? "auto", opts.env);
  return load(target, checkpoint, new Cleanup(), opts, checkpoint.path);
}

/**
 * Loads a checkpoint (a safetensors or PyTorch file, or a sharded folder or index) onto a device. By default one device
 * allocation per file holds its tensors at 256-byte-aligned offsets.
 *
 * With a `plan` (tensor parallelism), this rank (`rank`/`worldSize`, default the launcher's) reads only its part of
 * each tensor ({@link planSplit}): `get(name)` then has the part's `shape`, the `fullShape` and the `split` (null:
 * replicated); on cpu `bytes` holds the part contiguous in row-major order, on CUDA `ptr` does (its runs packed
 * into the pinned ring, or with `hostRegister` gathered by `cudaMemcpy2DAsync` straight from the pinned mapping;
 * `device: "cuda"` is then the local rank's GPU). Head counts come from `config.json` beside the weights, or `config`.
 * A remote checkpoint (http(s), `s3://`, `hf://`) is fetched the same way: each rank only its runs, by ranged GETs
 * (runs at most `remote.gapBytes` apart, a page by default, as one GET), and `config.json` by one small GET from
 * the URL's folder.
 *
 * @example
 * ```ts
 * import { loadToDevice } from "tensormap";
 * using weights = await loadToDevice("checkpoints/gpt2", { device: "auto" }); // "cuda:0" insists on the GPU
 * for (const [name, t] of weights) console.log(name, t.device === "cpu" ? t.bytes.byteLength : t.ptr);
 * using rank1 = await loadToDevice("checkpoints/gpt2", { device: "cpu", rank: 1, worldSize: 2, plan: "gpt2" });
 * const qkv = rank1.get("h.0.attn.c_attn.weight");
 * console.log(qkv.shape, qkv.fullShape, qkv.split); // half of each of q, k and v: [16, 24] [16, 48] { dim: 1, start: 8, end: 16, parts: 3 }
 * ```
 */
export async function loadToDevice(path: string, opts: DeviceLoadOptions = {}): Promise<DeviceTensors> {
  const sliced = opts.plan !== undefined;
  // A rank's "cuda" is the GPU of its local rank.
  const device = sliced && opts.device === "cuda" ? `cuda:${rankOf(opts).localRank}` : opts.device ?? "auto";
  const target = await resolveDevice(device, opts.env);
  const owned = new Cleanup();
  try {
    // On CUDA the data is pread into the ring (or read from a mapping registered for the purpose): no mapping needed.
    // A rank's parts are scattered runs: no read-ahead past the pages they touch.
    const checkpoint = await openCheckpoint(path, { backend: target.kind === "cpu" ? "auto" : "read", threads: opts.threads, remote: opts.remote, ...(sliced ? { advice: "random" as const } : {}) });
    owned.add(() => checkpoint.close());
    // config.json is looked for beside the URL as given (its credentials, its folder), a local path's beside the file opened.
    return await load(target, checkpoint, owned, opts, isRemoteUrl(path) ? path : checkpoint.path);
  } catch (e) {
    quietly(() => owned.run());
    throw e;
  }
}

/** One file's share of a load: the tensors picked from it and where their bytes are. */
interface FilePlan {
  file: CheckpointFile;
  names: string[];
  extents: Extent[];
  /** Tensor-parallel loads: this rank's part of each tensor, what is read and copied instead of the whole. */
  parts?: RankPart[];
}

/**
 * `owned` closes files the load opened itself: right after a CUDA upload, or with the tensors on cpu. `where` is
 * the checkpoint's path or URL, beside which a plan looks for `config.json`.
 */
async function load(target: DeviceTarget, checkpoint: Checkpoint, owned: Cleanup, opts: DeviceLoadOptions, where: string): Promise<DeviceTensors> {
  if (target.kind === "cuda" && opts.hostRegister && isRemoteUrl(checkpoint.path)) {
    throw new SafetensorsError("InvalidArgument", `hostRegister pins a local file's mapping; ${checkpoint.path} is remote: load it without hostRegister (its bytes go through the pinned ring)`);
  }
  let plans = pick(checkpoint, opts.names, target.kind === "cpu");
  if (opts.plan !== undefined) {
    // A Hub checkpoint's config from the commit its weights came from.
    const commit = (plans[0]?.file.source as { commit?: string } | undefined)?.commit;
    const config = await modelConfig(where, opts, commit);
    if (target.kind === "cpu") return loadSlices(plans, config, { ...opts, plan: opts.plan }, target.reason, owned);
    plans = planParts(plans, config, { ...opts, plan: opts.plan }).map((p, i) => ({ ...plans[i]!, parts: p.parts }));
  }
  const total = plans.reduce((a, p) => a + (p.parts ?? p.extents).reduce((b, e) => b + e.byteLength, 0), 0);
  const progress = { done: 0, total };
  const report = (file: string, n: number) => {
    progress.done += n;
    opts.onProgress?.({ file, bytesDone: progress.done, bytesTotal: total });
  };
  const t0 = performance.now();
  if (target.kind === "cpu") {
    // Mapped files: the kernel reads and maps the chosen tensors ahead of the walk, one file after another (one
    // stream). A copying source (remote) serves only what it has fetched: every file's fetch starts now (the
    // transfers' limits bound what is in flight), once, and the walk waits for each file's in turn.
    let ahead = Promise.resolve();
    const fetched = new Map<CheckpointFile, Promise<void>>();
    for (const { file, names } of plans) {
      if (file.source.zeroCopy) ahead = ahead.then(() => file.prefetch(names)).catch(() => {});
      else {
        const fetch = file.prefetch(names);
        fetch.catch(() => {}); // awaited below; a later file's failure must not go unhandled meanwhile
        fetched.set(file, fetch);
      }
    }
    const tensors = new Map<string, DeviceTensor>();
    for (const { file, names } of plans) {
      await fetched.get(file);
      for (const name of names) {
        const t = file.tensor(name);
        // Loaded means in memory: fault in every page of a mapped view now, not on first use.
        touchPages(t.bytes);
        tensors.set(name, { name, dtype: t.dtype, shape: [...t.shape], byteLength: t.bytes.byteLength, device: "cpu", bytes: t.bytes });
        report(file.path, t.bytes.byteLength);
        await yieldToLoop();
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return new DeviceTensors({ device: "cpu", reason: target.reason, tensors, cleanup: owned, bytes: total, seconds });
  }
  try {
    const tensors = await upload(target.device, plans, total, opts, report);
    const seconds = (performance.now() - t0) / 1000;
    return new DeviceTensors({ ...tensors, device: target.device.name, reason: target.reason, bytes: total, seconds });
  } finally {
    // The files' bytes are on the device now: a failure to close one must not lose the loaded tensors.
    quietly(() => owned.run());
  }
}

/** The tensors to load from each file of the checkpoint, in file order; every requested name must exist. */
function pick(checkpoint: Checkpoint, names: string[] | undefined, onHost: boolean): FilePlan[] {
  const missing = names?.filter((n) => !checkpoint.has(n)) ?? [];
  if (missing.length) throw new SafetensorsError("TensorNotFound", `no tensor named ${missing.map((n) => JSON.stringify(n)).join(", ")} in ${checkpoint.path}`);
  const wanted = names ? new Set(names) : null;
  const plans: FilePlan[] = [];
  for (const name of checkpoint.files) {
    const chosen = checkpoint.offsetKeys(name).filter((n) => !wanted || wanted.has(n));
    if (!chosen.length && wanted) continue;
    const file = checkpoint.shard(name);
    const extents = chosen.map((n) => {
      const { start, byteLength, gather } = file.entry(n);
      if (gather && !onHost) {
        throw new SafetensorsError("InvalidArgument", `${JSON.stringify(n)} in ${file.path} is a strided view, not one run of bytes; convert the checkpoint to safetensors first (tensormap convert)`);
      }
      return { start, byteLength };
    });
    plans.push({ file, names: chosen, extents });
  }
  return plans;
}

async function upload(
  device: CudaDevice,
  plans: FilePlan[],
  total: number,
  opts: DeviceLoadOptions,
  report: (file: string, n: number) => void,
): Promise<{ tensors: Map<string, DeviceTensor>; cleanup: Cleanup; copyBack: (t: CudaTensor) => Uint8Array }> {
  const { cuda } = device;
  check(cuda, cuda.cudaSetDevice(device.index), `cudaSetDevice(${device.index})`);
  const memory = new Cleanup();
  const tensors = new Map<string, DeviceTensor>();
  // A small load needs no 128 MiB ring: shrink the slots to the data (whole pages).
  const slotBytes = Math.min(opts.slotBytes ?? 32 << 20, Math.max(4096, Math.ceil(total / 4096) * 4096));
  const { gapBytes } = resolveRemoteOptions(opts.remote);
  let ahead: ReadAhead | undefined;
  try {
    await withRing(device, { slots: opts.slots, slotBytes, pinned: !opts.hostRegister }, async (ring) => {
      for (const { file, names, extents, parts } of plans) {
        // Set again for each file: other loads may switch the thread's device while this one awaits.
        check(cuda, cuda.cudaSetDevice(device.index), `cudaSetDevice(${device.index})`);
        const targets = allocate(device, (parts ?? extents).map((e) => e.byteLength), opts.perTensor === true, memory);
        const fileRuns = parts?.map((p, i) => p.runs.map(([offset, length]): [number, number] => [extents[i]!.start + offset, length]));
        // A rank's runs are scattered: their pages asked for exactly, so the ring's reads start no read-ahead.
        if (fileRuns) (ahead ??= await ReadAhead.open()).advise(file.path, fileRuns.flat());
        const onBytes = (n: number) => report(file.path, n);
        const release = new Cleanup();
        try {
          if (opts.hostRegister && parts) {
            // The copy engine gathers each part's rows from the pinned mapping (source pitch: the full row), no CPU copy.
            const copies = planPitchedCopies(parts.map((p, i) => ({ start: extents[i]!.start, blocks: splitBlocks(p.name, p.info.shape, DTYPES.get(p.info.dtype)!.bits, p.split) })), ring.slotBytes);
            // Each part's pages from its first run to its last (a dim-1 part's rows whole: its columns share their pages).
            const spans = fileRuns!.filter((r) => r.length).map((r): [number, number] => [r[0]![0], r.at(-1)![0] + r.at(-1)![1]]).sort((a, b) => a[0] - b[0]);
            if (copies.length) await ring.uploadPitched(copies, targets, registerMapping(device, await hostLibc(), file.path, (page, max) => mappedSpans(spans, page, max, file.path), release, "random"), onBytes);
          } else {
            // Packed runs, not a pitched slot: the reads fetch exactly the part's bytes, the slot holds nothing else, and the 1-D copy lands them in order.
            const chunks = fileRuns ? planGatherChunks(fileRuns, ring.slotBytes) : planChunks(extents, ring.slotBytes);
            const registered = (page: number, max: number) => [mappedRange(chunks, page, max, file.path)!];
            // Only empty tensors: nothing to read, no mapping to pin.
            // A remote file's runs at most gapBytes apart are one GET, as on cpu.
            const source = fileRuns && isRemoteUrl(file.path) ? coalescedReads(file.source, fileRuns.flat(), gapBytes, await hostLibc()) : file.source;
            if (chunks.length) await ring.upload(chunks, targets, opts.hostRegister ? { mapped: registerMapping(device, await hostLibc(), file.path, registered, release) } : { source }, onBytes);
          }
          release.run();
        } catch (e) {
          quietly(() => ring.synchronize()); // no copy may still read the mapping once it is unregistered
          quietly(() => release.run());
          throw e;
        }
        names.forEach((name, i) => {
          const info = file.info(name);
          const part = parts?.[i];
          const facts = part ? { shape: part.shape, fullShape: info.shape, split: part.split, byteLength: part.byteLength } : { shape: info.shape, byteLength: info.byteLength };
          tensors.set(name, { name, dtype: info.dtype, ...facts, device: device.name, ptr: targets[i]! });
        });
      }
    });
  } catch (e) {
    quietly(() => memory.run());
    throw e;
  } finally {
    ahead?.close();
  }
  // Frees run with this device current, whichever device the thread has moved on to.
  const cleanup = new Cleanup();
  cleanup.add(() => memory.run());
  cleanup.add(() => check(cuda, cuda.cudaSetDevice(device.index), `cudaSetDevice(${device.index})`));
  const copyBack = (t: CudaTensor): Uint8Array => {
    const out = new Uint8Array(t.byteLength);
    if (t.byteLength === 0) return out;
    check(cuda, cuda.cudaSetDevice(device.index), `cudaSetDevice(${device.index})`);
    check(cuda, cuda.cudaMemcpy(cuda.address(out), t.ptr, BigInt(t.byteLength), CUDA.memcpyDeviceToHost), `cudaMemcpy(${t.name} to host)`);
    return out;
  };
  return { tensors, cleanup, copyBack };
}

/** Device addresses per tensor: offsets in one allocation, or one allocation each (empty tensors get 0n). */
function allocate(device: CudaDevice, sizes: number[], perTensor: boolean, memory: Cleanup): bigint[] {
  if (perTensor) return sizes.map((n) => (n ? deviceAlloc(device, n, memory) : 0n));
  const { offsets, total } = layoutDevice(sizes);
  const base = total ? deviceAlloc(device, total, memory) : 0n;
  return offsets.map((o) => base + BigInt(o));
}

/** libc for mapping a file to pin; there is FFI wherever libcudart loaded, so this is a safeguard. */
async function hostLibc(): Promise<LibC> {
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new SafetensorsError("FfiUnavailable", `cannot read files into host memory: ${libc.unavailable}`);
  return libc;
}

/**
 * Pins the spans of the file's mapping the copies read (read-only) so the copy engine reads its pages; unregistered
 * by `release`. `spansOf` gives them, each within one mapping (on Bun at most 4 GiB), from the page and view sizes.
 * Returns the address at which the copy engine reads a file offset. `advice` is the mapping's read-ahead (a rank's
 * scattered runs: `random`, their pages asked for exactly beforehand).
 */
function registerMapping(
  device: CudaDevice,
  libc: LibC,
  path: string,
  spansOf: (page: number, maxView: number) => Array<{ start: number; length: number }>,
  release: Cleanup,
  advice: Advice = "none",
): (fileOffset: number) => bigint {
  const { cuda } = device;
  const attr = new Int32Array(1);
  for (const [id, what] of [[CUDA.attrHostRegisterSupported, "cudaHostRegister"], [CUDA.attrHostRegisterReadOnlySupported, "cudaHostRegisterReadOnly"]] as const) {
    check(cuda, cuda.cudaDeviceGetAttribute(attr, id, device.index), `cudaDeviceGetAttribute(${id})`);
    if (!attr[0]) throw new SafetensorsError("CudaError", `${device.name} does not support ${what}; load without hostRegister`);
  }
  // A mapping of its own, of the page cache's pages themselves (shared, read-only): pinning a private
  // mapping would copy every page. It is never handed out, so nothing can write into it.
  const mapping = openMmap(libc, path, { shared: true, advice });
  release.add(() => mapping.close());
  const spans = spansOf(libc.pageSize, mapping.maxView).map(({ start, length }) => {
    const base = mapping.pointer(start, length);
    const size = BigInt(Math.ceil(length / libc.pageSize) * libc.pageSize);
    check(cuda, cuda.cudaHostRegister(base, size, CUDA.hostRegisterPortable | CUDA.hostRegisterReadOnly), `cudaHostRegister(${path})`);
    release.add(() => check(cuda, cuda.cudaHostUnregister(base), "cudaHostUnregister"));
    return { start, base };
  });
  // File offset x is read at its span's base + (x − span start); only offsets inside a registered span are ever used.
  const starts = spans.map((s) => s.start);
  return (fileOffset) => {
    const { start, base } = spans[lastAtOrBefore(starts, fileOffset)]!;
    return base + BigInt(fileOffset - start);
  };
}

/** 13000 → "13.0", 12040 → "12.4"; 0 (no driver) → "none". */
function version(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : "none";
}
