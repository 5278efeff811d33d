/**
 * One process of the fakecudart suite (test/device/fakecudart.test.ts): runs the loads its argument describes
 * through the public API, against whatever libcudart `TENSORMAP_CUDART` names (the checking stand-in), prints
 * one JSON line of what it saw and ends normally, so the stand-in writes its exit report.
 *
 *   bun test/device/fakecudart-child.ts '{"loads":[{"path":"…","options":{"device":"cuda:0"}}]}'
 */
import { createHash } from "node:crypto";
import { loadToDevice, openCheckpoint, releasePinnedRings, SafetensorsError, toDevice, type DeviceLoadOptions, type DeviceTensors, type LoadProgress, type Split } from "../../src/index.ts";
import { runtime } from "../../ffi/runtime.ts";
import { deno } from "../../ffi/deno/api.ts";
import { nodeFfi } from "../../ffi/node/api.ts";
import { evict, storageReads } from "../io/smaps.ts";

/** One load: which checkpoint, how, and what to do with the tensors afterwards. */
export interface LoadSpec {
  path: string;
  /** `toDevice` loads from a checkpoint this process opened (and checks it still reads after `free`). */
  via?: "loadToDevice" | "toDevice";
  options?: Omit<DeviceLoadOptions, "onProgress" | "env">;
  /** How the tensors are let go: `free()`, `using` (dispose), or not at all (the report must show the leak). */
  release?: "free" | "dispose" | "keep";
  /** Call `releasePinnedRings()` at the load's first progress callback (while it runs), or once it is done. */
  releaseRings?: "during" | "after";
  /** Evict the file (a single file's path) from the page cache first, and count what the load reads from storage. */
  cold?: boolean;
}

/** What the child is asked: loads run one after another, or all at once (`concurrent`). */
export interface ChildSpec {
  loads: LoadSpec[];
  concurrent?: boolean;
}

export interface TensorSeen {
  name: string;
  dtype: string;
  shape: number[];
  /** A rank's part: the whole tensor's shape, and which part this is (null: replicated). */
  fullShape?: number[];
  split?: Split | null;
  byteLength: number;
  device: string;
  /** sha256 of `toHost(name)`, the bytes copied back from the device. */
  sha256: string;
  /** The device cudaPointerGetAttributes places the tensor's pointer on (null for empty tensors: no pointer). */
  ptrDevice: number | null;
}

export interface ErrorSeen {
  isSafetensorsError: boolean;
  code: string | null;
  message: string;
  /** The CUDA call that failed, from a CudaError's cause. */
  call: string | null;
}

export type LoadSeen =
  | {
      ok: true;
      device: string;
      bytes: number;
      /** Empty when copying back failed (`toHostError`). */
      tensors: TensorSeen[];
      toHostError: ErrorSeen | null;
      progress: LoadProgress[];
      /** Bytes the load read from storage (`read_bytes`), for a `cold` load. */
      readBytes: number | null;
      /** What `toHost` threw once the tensors were released. */
      afterFree: ErrorSeen | null;
      /** Whether a checkpoint opened for `toDevice` still reads once the tensors are released. */
      fileAfterFree: boolean | null;
    }
  | { ok: false; error: ErrorSeen; progress: LoadProgress[]; fileAfterFailure: boolean | null };

function describe(e: unknown): ErrorSeen {
  const cause = e instanceof SafetensorsError ? (e.cause as { call?: string } | undefined) : undefined;
  return {
    isSafetensorsError: e instanceof SafetensorsError,
    code: e instanceof SafetensorsError ? e.code : null,
    message: e instanceof Error ? e.message : String(e),
    call: cause?.call ?? null,
  };
}

/** `cudaPointerGetAttributes(ptr).device`, through the same library the load used (dlopen hands back the loaded one). */
async function pointerDeviceQuery(): Promise<(ptr: bigint) => number> {
  const path = process.env.TENSORMAP_CUDART!;
  const attrs = new Uint8Array(24); // { int type; int device; void *devicePointer; void *hostPointer; }
  let call: (ptr: bigint) => number;
  if (runtime === "bun") {
    const { dlopen } = await import("bun:ffi");
    const lib = dlopen(path, { cudaPointerGetAttributes: { args: ["ptr", "u64"], returns: "i32" } });
    call = (ptr) => lib.symbols.cudaPointerGetAttributes(attrs, ptr);
  } else if (runtime === "node") {
    const lib = nodeFfi().dlopen(path, { cudaPointerGetAttributes: { arguments: ["pointer", "uint64"], return: "int32" } });
    call = (ptr) => lib.functions.cudaPointerGetAttributes(attrs, ptr) as number;
  } else {
    const lib = deno().dlopen(path, { cudaPointerGetAttributes: { parameters: ["buffer", "u64"], result: "i32" } });
    call = (ptr) => lib.symbols.cudaPointerGetAttributes(attrs, ptr) as number;
  }
  return (ptr) => {
    const err = call(ptr);
    if (err !== 0) throw new Error(`cudaPointerGetAttributes(0x${ptr.toString(16)}) = ${err}`);
    return new DataView(attrs.buffer).getInt32(4, true);
  };
}

function seeTensors(w: DeviceTensors, deviceOf: (ptr: bigint) => number): TensorSeen[] {
  return [...w].map(([name, t]) => ({
    name,
    dtype: t.dtype,
    shape: [...t.shape],
    ...(t.fullShape ? { fullShape: [...t.fullShape], split: t.split ?? null } : {}),
    byteLength: t.byteLength,
    device: t.device,
    sha256: createHash("sha256").update(w.toHost(name)).digest("hex"),
    ptrDevice: t.device !== "cpu" && t.byteLength > 0 ? deviceOf(t.ptr) : null,
  }));
}

async function runLoad(spec: LoadSpec, deviceOf: (ptr: bigint) => number): Promise<LoadSeen> {
  const progress: LoadProgress[] = [];
  const onProgress = (p: LoadProgress) => {
    if (spec.releaseRings === "during" && progress.length === 0) releasePinnedRings();
    progress.push({ ...p });
  };
  const options: DeviceLoadOptions = { ...spec.options, onProgress };
  const file = spec.via === "toDevice" ? await openCheckpoint(spec.path) : null;
  const fileReads = () => (file ? file.tensor(file.keys()[0]!).bytes.byteLength === file.info(file.keys()[0]!).byteLength : null);
  let w: DeviceTensors;
  if (spec.cold) evict(spec.path);
  const before = storageReads();
  try {
    w = file ? await toDevice(file, options) : await loadToDevice(spec.path, options);
  } catch (e) {
    const seen: LoadSeen = { ok: false, error: describe(e), progress, fileAfterFailure: fileReads() };
    file?.close();
    return seen;
  }
  const readBytes = spec.cold ? storageReads() - before : null;
  let tensors: TensorSeen[] = [];
  let toHostError: ErrorSeen | null = null;
  const see = (held: DeviceTensors) => {
    try {
      tensors = seeTensors(held, deviceOf);
    } catch (e) {
      toHostError = describe(e);
    }
  };
  if (spec.release === "dispose") {
    using held = w;
    see(held);
  } else {
    see(w);
    if (spec.release !== "keep") w.free();
  }
  let afterFree: ErrorSeen | null = null;
  if (spec.release !== "keep") {
    try {
      w.toHost(w.keys()[0]!);
    } catch (e) {
      afterFree = describe(e);
    }
  }
  if (spec.releaseRings === "after") releasePinnedRings();
  const seen: LoadSeen = { ok: true, device: w.device, bytes: w.bytes, tensors, toHostError, progress, readBytes, afterFree, fileAfterFree: fileReads() };
  file?.close();
  return seen;
}

const spec = JSON.parse(process.argv[2]!) as ChildSpec;
const deviceOf = await pointerDeviceQuery();
const loads = spec.concurrent
  ? await Promise.all(spec.loads.map((l) => runLoad(l, deviceOf)))
  : await spec.loads.reduce<Promise<LoadSeen[]>>(async (done, l) => [...(await done), await runLoad(l, deviceOf)], Promise.resolve([]));
console.log(JSON.stringify({ loads }));
