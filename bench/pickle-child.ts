/**
 * One measured load, run as its own process by `bench/pickle.ts` under Bun, Deno or Node: opens a checkpoint
 * with tensormap, touches every tensor, and prints the in-process time as JSON. `TOUCH` says how, the same way
 * for every loader in the run: `tensor` reads the first and last byte of each tensor (the tensor is usable);
 * `page` reads one byte of every 4 KiB page (every byte of the data has come into memory).
 * Loading libc through FFI happens before the clock starts, as `import torch` does for the Python peers.
 * Usage: `pickle-child.ts tensor|page PATH`.
 */
import { loadLibc } from "../src/io/libc.ts";
import { open, touchPages } from "../src/index.ts";

const [touch, path] = process.argv.slice(-2) as ["tensor" | "page", string];
const step = touch === "page" ? 4096 : Infinity;
await loadLibc();
const t0 = performance.now();
const file = await open(path);
let sink = 0;
let tensors = 0;
for (const name of file.offsetKeys()) {
  sink += touchPages(file.tensor(name).bytes, step);
  tensors++;
}
const ms = performance.now() - t0;
const backend = file.backend;
file.close();
console.log(JSON.stringify({ ms, tensors, backend, sink }));
