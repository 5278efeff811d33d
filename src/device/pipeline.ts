/**
 * The host→device pipeline: a ring of pinned slots allocated once, one non-blocking stream, one event per slot.
 * File bytes are `pread` into slot i (by several threads) while the copy engine drains slot i−1; a slot is
 * refilled only after its event says the previous copy out of it finished. With a pinned mapping
 * (`cudaHostRegister`) the copy engine reads file pages directly and the ring only paces progress.
 */
import { setImmediate } from "node:timers";
import { CUDA } from "../../ffi/types.ts";
import { SafetensorsError } from "../errors.ts";
import type { ByteSource } from "../io/source.ts";
import { check, Cleanup, hostAlloc, type CudaDevice } from "./cuda.ts";
import type { Chunk } from "./plan.ts";
import type { GatherChunk, PitchedCopy } from "./tp-plan.ts";

export interface RingOptions {
  /** Pinned slots in the ring (default 4). */
  slots?: number;
  /** Bytes per slot (default 32 MiB); also the largest single copy. */
  slotBytes?: number;
}

/** Where chunk bytes come from: a byte source read into the ring, or a registered mapping (the address of a file offset). */
export type ChunkSource = { source: ByteSource } | { mapped: (fileOffset: number) => bigint };

/** Lets timers, I/O and progress callbacks run between slots (FFI calls block the thread). */
export const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Polls that follow each other at once before {@link pollUntil} backs off to timers. */
export const EAGER_POLLS = 16;

/**
 * Resolves once `done()` returns true, asking again at once for the first {@link EAGER_POLLS} polls (a copy
 * finishing soon is caught without delay), then at most once a millisecond, so a long wait leaves the core idle.
 * The loop runs between polls. Resolves to the number of polls made; rejects when `done()` throws.
 *
 * @example
 * ```ts
 * await pollUntil(() => cuda.cudaEventQuery(event) === CUDA.success);
 * ```
 */
export async function pollUntil(done: () => boolean): Promise<number> {
  for (let polls = 1; ; polls++) {
    if (done()) return polls;
    await (polls < EAGER_POLLS ? yieldToLoop() : new Promise<void>((resolve) => setTimeout(resolve, 1)));
  }
}

/**
 * One device's copy machinery, reused for every file of a load.
 *
 * @example
 * ```ts
 * const ring = PinnedRing.open(device, { slots: 4, slotBytes: 32 << 20 });
 * try { await ring.upload(chunks, targets, { source: file.source }, (n) => done += n); }
 * finally { ring.close(); }
 * ```
 */
export class PinnedRing {
  readonly slots: number;
  readonly slotBytes: number;
  #dev: CudaDevice;
  #cleanup: Cleanup;
  #base: bigint;
  #stream: bigint;
  #events: bigint[];

  private constructor(dev: CudaDevice, cleanup: Cleanup, slots: number, slotBytes: number, base: bigint, stream: bigint, events: bigint[]) {
    this.#dev = dev;
    this.#cleanup = cleanup;
    this.slots = slots;
    this.slotBytes = slotBytes;
    this.#base = base;
    this.#stream = stream;
    this.#events = events;
  }

  /**
   * Allocates the stream, the events and (unless `pinned` is false, for registered mappings) the pinned slots.
   * On failure everything allocated so far is freed before the error propagates.
   */
  static open(dev: CudaDevice, opts: RingOptions & { pinned?: boolean } = {}): PinnedRing {
    const slots = opts.slots ?? 4;
    const slotBytes = opts.slotBytes ?? 32 << 20;
    if (!Number.isInteger(slots) || slots < 1 || slots > 64) throw new SafetensorsError("InvalidArgument", `slots must be 1..64, got ${slots}`);
    if (!Number.isInteger(slotBytes) || slotBytes < 4096) throw new SafetensorsError("InvalidArgument", `slotBytes must be at least 4096, got ${slotBytes}`);
    const { cuda } = dev;
    const cleanup = new Cleanup();
    try {
      const base = opts.pinned === false ? 0n : hostAlloc(cuda, slots * slotBytes, cleanup);
      const out = new BigUint64Array(1);
      check(cuda, cuda.cudaStreamCreateWithFlags(out, CUDA.streamNonBlocking), "cudaStreamCreateWithFlags");
      const stream = out[0]!;
      cleanup.add(() => check(cuda, cuda.cudaStreamDestroy(stream), "cudaStreamDestroy"));
      const events: bigint[] = [];
      for (let i = 0; i < slots; i++) {
        check(cuda, cuda.cudaEventCreateWithFlags(out, CUDA.eventDisableTiming), "cudaEventCreateWithFlags");
        const event = out[0]!;
        events.push(event);
        cleanup.add(() => check(cuda, cuda.cudaEventDestroy(event), "cudaEventDestroy"));
      }
      // Runs first on close: no copy may still be reading a slot when the slots are freed.
      cleanup.add(() => check(cuda, cuda.cudaStreamSynchronize(stream), "cudaStreamSynchronize"));
      return new PinnedRing(dev, cleanup, slots, slotBytes, base, stream, events);
    } catch (e) {
      quietly(() => cleanup.run());
      throw e;
    }
  }

  /**
   * Copies every chunk to `targets[piece.tensor] + piece.tensorOffset`. Chunks must be at most `slotBytes`.
   * `onBytes` is told, in order, how many bytes each chunk landed on the device. Resolves when all have landed.
   */
  async upload(chunks: Array<Chunk | GatherChunk>, targets: bigint[], from: ChunkSource, onBytes: (n: number) => void): Promise<void> {
    const { cuda } = this.#dev;
    await this.#paced(chunks, onBytes, async (c, slot) => {
      let src: bigint;
      if ("mapped" in from) src = from.mapped(c.fileOffset);
      else {
        src = this.#base + BigInt(slot * this.slotBytes);
        await readChunk(from.source, c, src);
      }
      // The current device is per thread and a load on another device may have run during the awaits.
      check(cuda, cuda.cudaSetDevice(this.#dev.index), `cudaSetDevice(${this.#dev.index})`);
      for (const p of c.pieces) {
        const dst = targets[p.tensor]! + BigInt(p.tensorOffset);
        const err = cuda.cudaMemcpyAsync(dst, src + BigInt(p.chunkOffset), BigInt(p.length), CUDA.memcpyHostToDevice, this.#stream);
        check(cuda, err, `cudaMemcpyAsync(${p.length} bytes to ${this.#dev.name})`);
      }
    });
  }

  /**
   * Gathers strided parts in the copy engine: each copy is one `cudaMemcpy2DAsync` from the registered mapping
   * `mapped` to `targets[copy.tensor] + copy.dstOffset`, paced by the ring's events like {@link upload}.
   */
  async uploadPitched(copies: PitchedCopy[], targets: bigint[], mapped: (fileOffset: number) => bigint, onBytes: (n: number) => void): Promise<void> {
    const { cuda } = this.#dev;
    await this.#paced(copies, onBytes, (c) => {
      check(cuda, cuda.cudaSetDevice(this.#dev.index), `cudaSetDevice(${this.#dev.index})`);
      const dst = targets[c.tensor]! + BigInt(c.dstOffset);
      const err = cuda.cudaMemcpy2DAsync(dst, BigInt(c.dstPitch), mapped(c.offset), BigInt(c.pitch), BigInt(c.width), BigInt(c.height), CUDA.memcpyHostToDevice, this.#stream);
      check(cuda, err, `cudaMemcpy2DAsync(${c.height} rows of ${c.width} bytes to ${this.#dev.name})`);
    });
  }

  /**
   * Queues each item's copies on slot `i % slots` once that slot's last copies have run, records the slot's event,
   * and tells `onBytes` each item's length, in order, as it lands. Resolves when all have landed.
   */
  async #paced<T extends { length: number }>(items: T[], onBytes: (n: number) => void, queue: (item: T, slot: number) => void | Promise<void>): Promise<void> {
    const { cuda } = this.#dev;
    const inFlight: (T | undefined)[] = new Array(this.slots);
    const settle = async (slot: number) => {
      const c = inFlight[slot];
      if (!c) return;
      await this.#wait(this.#events[slot]!);
      inFlight[slot] = undefined;
      onBytes(c.length);
    };
    for (let i = 0; i < items.length; i++) {
      const c = items[i]!;
      if (c.length > this.slotBytes) throw new RangeError(`chunk of ${c.length} bytes exceeds the slot size ${this.slotBytes}`);
      const slot = i % this.slots;
      await settle(slot);
      await queue(c, slot);
      check(cuda, cuda.cudaEventRecord(this.#events[slot]!, this.#stream), "cudaEventRecord");
      inFlight[slot] = c;
      await yieldToLoop();
    }
    // Drain in issue order so progress stays monotonic.
    for (let i = items.length; i < items.length + this.slots; i++) await settle(i % this.slots);
  }

  /** Waits until every copy queued on the ring's stream has run. */
  synchronize(): void {
    const { cuda } = this.#dev;
    check(cuda, cuda.cudaStreamSynchronize(this.#stream), "cudaStreamSynchronize");
  }

  /** Waits for the stream, then frees the events, the stream and the pinned slots. Idempotent. */
  close(): void {
    this.#cleanup.run();
  }

  /**
   * Waits for a slot's copy. Timer polls may notice it up to a millisecond late; the stream meanwhile copies the
   * other slots already queued, so the copy engine is not left idle.
   */
  async #wait(event: bigint): Promise<void> {
    const { cuda } = this.#dev;
    await pollUntil(() => {
      const r = cuda.cudaEventQuery(event);
      if (r !== CUDA.errorNotReady) check(cuda, r, "cudaEventQuery");
      return r === CUDA.success;
    });
  }
}

/** A chunk's bytes into the slot at `into`: one read, or for a gathered chunk each run packed after the last. */
function readChunk(source: ByteSource, c: Chunk | GatherChunk, into: bigint): Promise<void> {
  if (!("runs" in c)) return source.read(c.fileOffset, c.length, into);
  let at = 0n;
  const reads = c.runs.map(([offset, length]) => source.read(offset, length, into + (at += BigInt(length)) - BigInt(length)));
  // Settled, all of them, before a failure is told: no read may still write into the slot.
  return Promise.allSettled(reads).then((results) => {
    for (const r of results) if (r.status === "rejected") throw r.reason;
  });
}

/** Runs a release step after a failure without hiding that failure (the step still runs in full). */
export function quietly(release: () => void): void {
  try {
    release();
  } catch {
    // The original failure is the one worth reporting.
  }
}
