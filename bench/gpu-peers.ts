/**
 * The Python side of bench/gpu.ts: one `gpu_peers.py` process for the whole run (torch imported and CUDA
 * started once, outside every timing), asked one JSON line at a time. Its stderr is kept, and its last lines are
 * told when a request fails.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "gpu_peers.py");

/** The longest one request may take: a cold torch.load of 8 GB from a slow disk, with room. */
const ANSWER_S = 180;

/** What the peer process says of itself once torch is imported and the device is up. */
export interface PeerInfo {
  python: string;
  torch: string;
  safetensors: string;
  device: string;
  gpu: string | null;
}

/** One timed load by a Python peer. */
export interface PeerLoad {
  seconds: number;
  /** Until the first tensor was on the device: the whole load for loaders that return one dict. */
  first_seconds: number;
  bytes: number;
  tensors: number;
  /** Hashes of the tensors the request named, taken after the clock stopped. */
  hashes: Record<string, string>;
}

export type PeerOp = "load_file" | "safe_open" | "torch_load";

/** A running `gpu_peers.py`; one request at a time, answered in order. */
export class Peers {
  readonly info: PeerInfo;
  #child: ChildProcessWithoutNullStreams;
  #answers: AsyncIterator<string>;
  #stderr: string[];
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(child: ChildProcessWithoutNullStreams, answers: AsyncIterator<string>, stderr: string[], info: PeerInfo) {
    this.#child = child;
    this.#answers = answers;
    this.#stderr = stderr;
    this.info = info;
  }

  /**
   * Starts `python gpu_peers.py device` and waits until it is ready; rejects with the reason (no python, no
   * torch or safetensors, no device) in one line.
   *
   * @example
   * ```ts
   * const peers = await Peers.start("python3", "cuda:0");
   * const r = await peers.load("load_file", ["model-00001-of-00004.safetensors"], []);
   * peers.close();
   * ```
   */
  static async start(python: string, device: string): Promise<Peers> {
    const child = spawn(python, [SCRIPT, device], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, PYTHONUNBUFFERED: "1" } });
    const stderr: string[] = [];
    createInterface({ input: child.stderr }).on("line", (l) => {
      stderr.push(l);
      if (stderr.length > 40) stderr.shift();
    });
    const answers = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const spawned = new Promise<never>((_, fail) => child.once("error", (e) => fail(new Error(`cannot start ${python}: ${e.message}`))));
    const first = await Promise.race([answers.next(), spawned]);
    const hello = first.done ? { ready: false as const, error: stderr.at(-1) ?? "exited" } : (JSON.parse(first.value) as { ready: false; error: string } | ({ ready: true } & PeerInfo));
    if (!hello.ready) {
      child.kill();
      throw new Error(`python peers unavailable (${python}): ${hello.error}`);
    }
    return new Peers(child, answers, stderr, hello);
  }

  /** One timed load of every tensor of `files`, hashing the tensors named in `hash` after the clock stopped. */
  load(op: PeerOp, files: string[], hash: string[]): Promise<PeerLoad> {
    return this.#ask({ op, files, hash });
  }

  /** torch.save copies of the shards (made only when missing or older than the shard). */
  makePt(files: string[]): Promise<{ files: string[]; made: number; seconds: number }> {
    return this.#ask({ op: "make_pt", files });
  }

  /** torch's pinned host→device copy rate, the median of `reps` copies of `bytes`. */
  pinned(bytes: number, reps: number): Promise<{ gbps: number }> {
    return this.#ask({ op: "pinned", bytes, reps });
  }

  /** Ends the process (it exits when its stdin closes). */
  close(): void {
    this.#child.stdin.end();
  }

  #ask<T>(request: object): Promise<T> {
    const asked = this.#queue.then(async () => {
      this.#child.stdin.write(`${JSON.stringify(request)}\n`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      // A peer that hangs (a stuck CUDA call) is ended: every later request then fails at once, and the run goes on.
      const late = new Promise<never>((_, fail) => {
        timer = setTimeout(() => {
          this.#child.kill("SIGKILL");
          fail(new Error(`no answer in ${ANSWER_S} s; python peers killed`));
        }, ANSWER_S * 1000);
      });
      const line = await Promise.race([this.#answers.next(), late]).finally(() => clearTimeout(timer));
      if (line.done) throw new Error(`python peers exited: ${this.#stderr.at(-1) ?? "no output"}`);
      const reply = JSON.parse(line.value) as T & { error?: string };
      if (reply.error) throw new Error(reply.error);
      return reply as T;
    });
    this.#queue = asked.catch(() => {});
    return asked;
  }
}
