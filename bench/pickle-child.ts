/**
 * One measured load, run as its own process by `bench/pickle.ts` under Bun, Deno or Node: opens a checkpoint
 * with tensormap, touches every tensor (one byte per 4 KiB page, so every page of the data is read, as
 * torch.load reads it all), and prints the in-process time as JSON.
 * Loading libc through FFI happens before the clock starts, as `import torch` does for the Python peers.
 * Usage: `pickle-child.ts PATH`.
 */
import { loadLibc } from "../ffi/libc.ts";
import { open, touchPages } from "../src/index.ts";

const path = process.argv[process.argv.length - 1]!;
await loadLibc();
const t0 = performance.now();
const file = await open(path);
let sink = 0;
let tensors = 0;
for (const name of file.offsetKeys()) {
  sink += touchPages(file.tensor(name).bytes);
  tensors++;
}
const ms = performance.now() - t0;
const backend = file.backend;
file.close();
console.log(JSON.stringify({ ms, tensors, backend, sink }));
