import { closedError } from "./source.ts";

/**
 * An open file descriptor shared by reads in flight on other threads. `close()` closes it only once the last
 * of them is over: closed under them, the number could be reused by the next open and feed them another file.
 *
 * @example
 * ```ts
 * const fd = new Descriptor("model.safetensors", openSync("model.safetensors", "r"), closeSync);
 * const n = await fd.during((d) => preadOnAnotherThread(d, dst, 4096, 0));
 * fd.close(); // now, or once that read is over
 * ```
 */
export class Descriptor {
  readonly path: string;
  #fd: number;
  #closeFd: (fd: number) => void;
  #reads = 0;
  #open = true;

  constructor(path: string, fd: number, closeFd: (fd: number) => void) {
    this.path = path;
    this.#fd = fd;
    this.#closeFd = closeFd;
  }

  get open(): boolean {
    return this.#open;
  }

  /** The descriptor, for a call that is over before this returns. */
  get fd(): number {
    if (!this.#open) throw closedError(this.path);
    return this.#fd;
  }

  /** Runs `read` with the descriptor, which stays open until the promise `read` returns has settled. */
  async during<T>(read: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.fd;
    this.#reads++;
    try {
      return await read(fd);
    } finally {
      this.#reads--;
      this.#closeIfIdle();
    }
  }

  /** Closes the descriptor now, or once the reads in flight are over. Idempotent. */
  close(): void {
    this.#open = false;
    this.#closeIfIdle();
  }

  #closeIfIdle(): void {
    if (this.#open || this.#reads > 0 || this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#closeFd(fd);
  }
}
