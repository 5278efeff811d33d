/**
 * Read-backend throughput: every tensor of a file read through `open(path, { backend: "read" })`,
 * against a plain sequential read of the same file in 8 MiB chunks (the page-cache ceiling for any
 * copying reader), both warm and measured in the same run. Size: `TENSORMAP_BENCH_MB` (default 512).
 *
 *   bun bench/read.ts      deno run -A bench/read.ts
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { save } from "../src/format/writer.ts";
import { open } from "../src/checkpoint/open.ts";
import { generated, header, medianMs, row } from "./support.ts";

const MB = Number(process.env.TENSORMAP_BENCH_MB ?? 512);
const RUNS = 7;
const CHUNK = 8 << 20;

/** A mix of large and small tensors, like a real checkpoint: mostly 4–32 MiB matrices, some vectors. */
const path = await generated(`read-${MB}MiB.safetensors`, (p) => {
  const tensors = new Map<string, { dtype: "BF16" | "F32"; shape: number[]; data: Uint8Array }>();
  let left = MB << 20;
  for (let i = 0; left > 0; i++) {
    const rows = i % 4 === 3 ? 1 : 1024 * (1 + (i % 4));
    const bytes = Math.min(left, rows * 4096 * 2);
    const cols = bytes / 2 / rows;
    if (!Number.isInteger(cols)) break;
    tensors.set(`layers.${i}.weight`, { dtype: "BF16", shape: [rows, cols], data: new Uint8Array(bytes).fill(i & 0xff) });
    left -= bytes;
  }
  return save(p, tensors);
});
const size = statSync(path).size;

/** The whole file in 8 MiB `readSync` calls, into one reused buffer or (to show what allocation costs) a new one each time. */
function sequential(fresh: boolean): number {
  const fd = openSync(path, "r");
  let buf = new Uint8Array(CHUNK);
  let total = 0;
  try {
    for (let n; (n = readSync(fd, buf, 0, CHUNK, total)) > 0; total += n) if (fresh) buf = new Uint8Array(CHUNK);
  } finally {
    closeSync(fd);
  }
  return total;
}

async function everyTensor(): Promise<number> {
  const file = await open(path, { backend: "read" });
  let total = 0;
  try {
    for (const name of file.keys()) total += file.tensor(name).bytes.byteLength;
  } finally {
    file.close();
  }
  return total;
}

header(`read backend over ${(size / 2 ** 20).toFixed(0)} MiB (page cache warm)`);
const gbps = (ms: number) => size / 1e9 / (ms / 1000);
const seqMs = await medianMs(() => sequential(false), RUNS, 1);
const freshMs = await medianMs(() => sequential(true), RUNS, 1);
const readMs = await medianMs(everyTensor, RUNS, 1);
row(`sequential readSync, 8 MiB chunks (${gbps(seqMs).toFixed(2)} GB/s)`, seqMs, seqMs);
row(`same, a new buffer per chunk (${gbps(freshMs).toFixed(2)} GB/s)`, freshMs, seqMs);
row(`every tensor via read backend (${gbps(readMs).toFixed(2)} GB/s)`, readMs, seqMs);
console.log(`  throughput ratio read backend / sequential: ${(seqMs / readMs).toFixed(2)}`);
