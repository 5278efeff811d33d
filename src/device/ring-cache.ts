/**
 * Pinned rings kept per device between loads. Pinning host memory runs at only 1–2 GB/s, so a ring is allocated
 * once and reused by every later load on that device, not allocated inside each timed load. A load that finds
 * the kept ring busy (another load on the same device) gets a ring of its own for the time it runs. Kept rings
 * are freed by {@link releasePinnedRings} and at exit.
 */
import type { CudaDevice } from "./cuda.ts";
import { PinnedRing, quietly, type RingOptions } from "./pipeline.ts";

interface Kept {
  ring: PinnedRing;
  busy: boolean;
}

const kept = new Map<string, Kept>();
let freesAtExit = false;

/**
 * Runs `use` with a ring for `device` of at least `opts.slotBytes` per slot: the kept one when it is free and large
 * enough, else a new one (kept for later loads unless the kept one is busy). A ring whose load failed is freed,
 * not kept: its stream may hold the failure.
 *
 * @example
 * ```ts
 * await withRing(device, { slots: 4, slotBytes: 32 << 20 }, (ring) => ring.upload(chunks, targets, from, onBytes));
 * ```
 */
export async function withRing<T>(device: CudaDevice, opts: RingOptions & { pinned: boolean }, use: (ring: PinnedRing) => Promise<T>): Promise<T> {
  const key = `${device.index}:${opts.pinned ? "pinned" : "mapped"}`;
  let entry = kept.get(key);
  const fits = (r: PinnedRing) => r.slots === (opts.slots ?? 4) && r.slotBytes >= (opts.slotBytes ?? 0);
  if (entry && !entry.busy && !fits(entry.ring)) {
    kept.delete(key);
    entry.ring.close();
    entry = undefined;
  }
  if (!entry || entry.busy) {
    const busy = entry !== undefined;
    entry = { ring: PinnedRing.open(device, opts), busy: false };
    if (!busy) keep(key, entry);
  }
  entry.busy = true;
  try {
    const result = await use(entry.ring);
    entry.busy = false;
    // A ring of this load's own, or one released while the load used it, is freed now that the load is done.
    if (kept.get(key) !== entry) entry.ring.close();
    return result;
  } catch (e) {
    if (kept.get(key) === entry) kept.delete(key);
    quietly(() => entry.ring.close());
    throw e;
  }
}

/**
 * Frees every pinned ring kept between loads (they are freed at exit too); one a load is using is freed when that
 * load is done. The next load allocates again.
 *
 * @example
 * ```ts
 * import { releasePinnedRings } from "tensormap";
 * releasePinnedRings(); // e.g. before handing the GPU's host memory budget to something else
 * ```
 */
export function releasePinnedRings(): void {
  const entries = [...kept.values()];
  kept.clear();
  for (const { ring, busy } of entries) if (!busy) quietly(() => ring.close());
}

function keep(key: string, entry: Kept): void {
  kept.set(key, entry);
  if (!freesAtExit) {
    freesAtExit = true;
    process.once("exit", releasePinnedRings);
  }
}
