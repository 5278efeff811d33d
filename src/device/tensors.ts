import { SafetensorsError } from "../errors.ts";
import type { TensorInfo } from "../format/layout.ts";
import type { Cleanup } from "./cuda.ts";
import type { Split } from "./tp-plan.ts";

/** What every loaded tensor says of itself. */
type TensorFacts = Pick<TensorInfo, "dtype" | "shape" | "byteLength"> & {
  name: string;
  /** Tensor-parallel loads: the whole tensor's shape (`shape` is the rank's part). */
  fullShape?: number[];
  /** Tensor-parallel loads: which part of the tensor this rank holds, or null when it holds it whole. */
  split?: Split | null;
};

/** A tensor in GPU memory: `ptr` is a device address (valid until `close()`), usable by any CUDA code in this process. */
export interface CudaTensor extends TensorFacts {
  device: `cuda:${number}`;
  ptr: bigint;
}

/** The CPU fallback: the tensor's host bytes (a view into the mapping under mmap, a copy under the read backend). */
export interface HostTensor extends TensorFacts {
  device: "cpu";
  bytes: Uint8Array;
}

export type DeviceTensor = CudaTensor | HostTensor;

export interface DeviceTensorsInit {
  /** `"cuda:0"` or `"cpu"`. */
  device: string;
  /** Why this device: what `auto` found, or that it was asked for. */
  reason: string;
  tensors: Map<string, DeviceTensor>;
  /** Frees device memory (and closes files a load opened itself). */
  cleanup: Cleanup;
  /** Copies a CUDA tensor's bytes back to the host. */
  copyBack?: (t: CudaTensor) => Uint8Array;
  /** Bytes moved and seconds taken by the load. */
  bytes: number;
  seconds: number;
}

/**
 * Tensors loaded onto a device: name → {@link DeviceTensor}, in file order. On CUDA every `ptr` points into
 * device memory this object owns; `close()` (or `using`) releases it, and nothing else does: no finalizer frees it
 * when this object is collected, since the `ptr`s handed out are plain bigints the collector cannot follow. On
 * the CPU fallback entries carry `bytes` instead of `ptr` (check `device`).
 *
 * @example
 * ```ts
 * import { loadToDevice } from "tensormap";
 * using weights = await loadToDevice("model.safetensors", { device: "auto" });
 * console.log(weights.device, weights.reason);
 * const wte = weights.get("wte.weight"); // { ptr, byteLength, dtype, shape, device: "cuda:0" } on a GPU
 * const back = weights.toHost("wte.weight"); // Uint8Array copy of the device bytes
 * ```
 */
export class DeviceTensors implements Iterable<[string, DeviceTensor]> {
  readonly device: string;
  readonly reason: string;
  readonly bytes: number;
  readonly seconds: number;
  #tensors: Map<string, DeviceTensor>;
  #cleanup: Cleanup;
  #copyBack: ((t: CudaTensor) => Uint8Array) | undefined;
  #closed = false;

  constructor(init: DeviceTensorsInit) {
    this.device = init.device;
    this.reason = init.reason;
    this.bytes = init.bytes;
    this.seconds = init.seconds;
    this.#tensors = init.tensors;
    this.#cleanup = init.cleanup;
    this.#copyBack = init.copyBack;
  }

  /**
   * How many tensors were loaded.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * using weights = await loadToDevice("model.safetensors", { device: "auto", names: ["wte.weight", "wpe.weight"] });
   * console.log(weights.size); // 2
   * ```
   */
  get size(): number {
    return this.#tensors.size;
  }

  /**
   * Whether a tensor of that name was loaded.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * using weights = await loadToDevice("model.safetensors", { device: "auto", names: ["wte.weight"] });
   * console.log(weights.has("wte.weight"), weights.has("wpe.weight")); // true false
   * ```
   */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /**
   * Tensor names in load (file) order.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * using weights = await loadToDevice("checkpoints/gpt2", { device: "auto" });
   * console.log(weights.keys()[0]); // the first tensor of the first shard
   * ```
   */
  keys(): string[] {
    return [...this.#tensors.keys()];
  }

  /**
   * One loaded tensor: a device pointer on CUDA, host bytes on cpu.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * using weights = await loadToDevice("model.safetensors", { device: "auto" });
   * const t = weights.get("wte.weight");
   * console.log(t.dtype, t.shape, t.device === "cpu" ? "host bytes" : `device address ${t.ptr}`);
   * ```
   */
  get(name: string): DeviceTensor {
    if (this.#closed) throw new SafetensorsError("Closed", `tensors on ${this.device} were closed (their memory freed)`);
    const t = this.#tensors.get(name);
    if (!t) throw new SafetensorsError("TensorNotFound", `no tensor named ${JSON.stringify(name)} was loaded`);
    return t;
  }

  /**
   * A fresh host copy of one tensor's bytes.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * using weights = await loadToDevice("model.safetensors", { device: "auto" });
   * const back = weights.toHost("wte.weight"); // 2048 bytes, copied back from the GPU (or from the file on cpu)
   * ```
   */
  toHost(name: string): Uint8Array {
    const t = this.get(name);
    if (t.device === "cpu") return t.bytes.slice();
    return this.#copyBack!(t);
  }

  *[Symbol.iterator](): Iterator<[string, DeviceTensor]> {
    for (const name of this.keys()) yield [name, this.get(name)];
  }

  /**
   * Releases the device memory (and closes files the load opened); pointers handed out become invalid.
   * Idempotent; `using` calls it at the end of the scope, as for every other resource tensormap hands out.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * const weights = await loadToDevice("model.safetensors", { device: "auto" });
   * const wte = weights.toHost("wte.weight");
   * weights.close(); // from here on weights.get(…) throws SafetensorsError Closed
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cleanup.run();
  }

  /**
   * The same as {@link close}, by the name earlier releases had.
   *
   * @example
   * ```ts
   * import { loadToDevice } from "tensormap";
   * const weights = await loadToDevice("model.safetensors", { device: "auto" });
   * weights.free(); // as weights.close()
   * ```
   */
  free(): void {
    this.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
