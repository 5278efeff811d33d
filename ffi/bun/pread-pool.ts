/**
 * A process-wide pool of pread Workers (`pread-worker.ts`), grown on demand and kept referenced only while reads
 * are pending. A read is settled only once its pread can no longer run: by the worker's answer, or, when a worker
 * dies, by its `close` event (the thread is gone). So a caller that frees the destination after a rejection
 * never frees memory a pread is still writing into.
 */

interface ReadJob {
  fd: number;
  dst: bigint;
  length: number;
  offset: number;
}

interface Pending {
  worker: Worker;
  resolve(n: number): void;
  reject(e: Error): void;
}

type Answer = { id: number; n: number; error?: undefined } | { id: number; error: string };

const WORKER_URL = new URL("./pread-worker.ts", import.meta.url).href;

/** Bun's Worker, which can be unreferenced: the web Worker type that Deno's checker knows has no ref/unref. */
interface RefWorker extends Worker {
  ref(): void;
  unref(): void;
}

class PreadPool {
  #workers: RefWorker[] = [];
  #pending = new Map<number, Pending>();
  #nextId = 0;
  #turn = 0;

  /** Runs one pread on one of the first `threads` workers; resolves to its result (−1 on failure). */
  pread(threads: number, job: ReadJob): Promise<number> {
    while (this.#workers.length < threads) this.#workers.push(this.#spawn());
    const worker = this.#workers[this.#turn++ % threads]!;
    const id = this.#nextId++;
    if (this.#pending.size === 0) for (const w of this.#workers) w.ref();
    const done = new Promise<number>((resolve, reject) => this.#pending.set(id, { worker, resolve, reject }));
    worker.postMessage({ id, ...job });
    return done;
  }

  #spawn(): RefWorker {
    const w = new Worker(WORKER_URL) as RefWorker;
    w.unref();
    let why = "exited";
    w.onmessage = (e: MessageEvent<Answer>) => {
      const a = e.data;
      this.#settle(a.id, (p) => (a.error === undefined ? p.resolve(a.n) : p.reject(new Error(`pread: ${a.error}`))));
    };
    // An uncaught error ends a Bun worker; terminate makes sure of it. Its reads are rejected on `close` only.
    w.onerror = (e) => {
      why = e.message.trim().split("\n").at(-1) ?? "failed"; // Bun prefixes a source excerpt
      this.#retire(w);
      w.terminate();
    };
    w.addEventListener("close", () => {
      this.#retire(w);
      for (const [id, p] of [...this.#pending]) {
        if (p.worker === w) this.#settle(id, (q) => q.reject(new Error(`pread worker ${why}`)));
      }
    });
    return w;
  }

  /** Takes a worker out of rotation; the next read that needs it spawns a replacement. */
  #retire(w: Worker): void {
    this.#workers = this.#workers.filter((x) => x !== w);
  }

  #settle(id: number, how: (p: Pending) => void): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    if (this.#pending.size === 0) for (const w of this.#workers) w.unref();
    how(p);
  }
}

/** The pool every Bun host file with more than one reader thread shares. */
export const preadPool = new PreadPool();
