/**
 * A counting semaphore: at most `slots` holders at once, the rest wait in arrival order. One is shared by every
 * file of a remote open, so many shards prefetching together still keep the parts in flight under the cap.
 *
 * @example
 * ```ts
 * const parts = new Limiter(16);
 * await parts.run(() => fetchPart(0));
 * ```
 */
export class Limiter {
  /** Holders allowed at once. */
  readonly slots: number;
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(slots: number) {
    this.slots = slots;
    this.#free = slots;
  }

  /** Runs `job` once a slot is free, and frees it after. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await job();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
