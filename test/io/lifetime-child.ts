/**
 * Run by lifetime.test.ts in a child process of the same runtime, so that a crash shows as an exit status
 * and the collector can be driven (`Bun.gc`, Deno with `--v8-flags=--expose-gc`, Node with `--expose-gc`). Prints one JSON line.
 */
import { readFileSync, statSync, truncateSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { MAP_PRIVATE, PROT_READ } from "../../ffi/types.ts";
import { loadLibc, type LibC } from "../../src/io/libc.ts";
import type { SafetensorsFile } from "../../src/checkpoint/file.ts";
import { open } from "../../src/checkpoint/open.ts";

const [mode, path, count] = process.argv.slice(2) as [string, string, string?];

function fileMappings(): number {
  return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.endsWith(path)).length;
}

/** Anonymous regions exactly as long as the file's mapping: what close() leaves over a view until it is collected. */
function zeroedWindows(): number {
  const length = Math.ceil(statSync(path).size / 4096) * 4096;
  return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => {
    const [range, , , , inode, name] = l.split(/\s+/);
    const [start, end] = (range ?? "0-0").split("-").map((x) => parseInt(x, 16));
    return inode === "0" && !name && end! - start! === length;
  }).length;
}

function vmSize(): number {
  return Number(/VmSize:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) * 1024;
}

async function collect(): Promise<void> {
  const g = globalThis as { Bun?: { gc(full: boolean): void }; gc?: () => void };
  for (let i = 0; i < 5; i++) {
    if (g.Bun) g.Bun.gc(true);
    else g.gc?.();
    // Finalization callbacks run in a later task.
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The byte sum of the file's last tensor (the one a truncation cuts off). */
function lastTensorSum(file: SafetensorsFile): number {
  return file.tensor(file.offsetKeys().at(-1)!).bytes.reduce((a, b) => a + b, 0);
}

/**
 * After the file shrank: what reading the last tensor gives, twice: its byte sum, or the error code. The first
 * read is zeros where the SIGBUS guard caught it, or FileChanged where the identity check saw the new size first.
 */
function afterTruncation(file: SafetensorsFile): { after: number | string; code: number | string } {
  const attempt = () => {
    try {
      return lastTensorSum(file);
    } catch (e) {
      return (e as { code: string }).code;
    }
  };
  return { after: attempt(), code: attempt() };
}

/** In a function of its own, so no stack slot of the caller still points at the last file. */
async function openWithoutClosing(n: number): Promise<number> {
  for (let i = 0; i < n; i++) (await open(path)).tensor("big");
  return fileMappings();
}

if (mode === "after-close") {
  const file = await open(path);
  const views = file.keys().map((k) => file.tensor(k).bytes);
  const before = views.reduce((s, v) => s + v.reduce((a, b) => a + b, 0), 0);
  // Writing into a view must not fault either: the page becomes the process's own copy, the file is untouched.
  const first = views.find((v) => v.length > 0)!;
  first[0] = first[0]! ^ 0xff;
  const wrote = first[0];
  file.close();
  // Views kept past close are detached: empty, so reading or writing them reaches no memory at all.
  const lengthsAfter = views.reduce((s, v) => s + v.length, 0);
  first[0] = 7;
  let code = "";
  try {
    file.tensor(file.keys()[0]!);
  } catch (e) {
    code = (e as { code: string }).code;
  }
  console.log(JSON.stringify({ backend: file.backend, before, lengthsAfter, code, wrote, writtenAfterClose: first[0] ?? null, fileMappings: fileMappings() }));
} else if (mode === "in-use") {
  // A view an asynchronous write still reads from when the file closes: no fault, whatever the runtime does.
  const file = await open(path);
  const view = file.tensor(file.offsetKeys()[0]!).bytes;
  const length = view.length;
  const writing = writeFile(`${path}.copy`, view);
  file.close();
  const afterClose = { length: view.length, zeros: view.length > 0 && view.every((b) => b === 0) };
  const wrote = await writing.then(
    () => "written",
    (e: Error) => e.name,
  );
  console.log(JSON.stringify({ length, afterClose, wrote }));
} else if (mode === "cycles") {
  await collect();
  const baseline = vmSize();
  const kept: Uint8Array[] = [];
  for (let i = 0; i < Number(count); i++) {
    const file = await open(path);
    const view = file.tensor("big").bytes;
    if (i % 10 === 0) kept.push(view);
    file.close();
  }
  const afterClose = fileMappings();
  const zeroedWhileKept = zeroedWindows();
  // Never closed: released by the collector alone.
  const unclosed = await openWithoutClosing(100);
  kept.length = 0;
  await collect();
  console.log(JSON.stringify({ afterClose, zeroedWhileKept, unclosed, afterGc: fileMappings(), zeroedAfterGc: zeroedWindows(), growth: vmSize() - baseline }));
} else if (mode === "shrunk") {
  // Enough opens and closes to fill the guard's table, were closing not to free its slots.
  for (let i = 0; i < Number(count); i++) (await open(path)).close();
  const file = await open(path);
  const before = lastTensorSum(file);
  truncateSync(path, 1000);
  console.log(JSON.stringify({ before, ...afterTruncation(file) }));
} else if (mode === "many-open") {
  // More mappings open at once than one block of the guard's table holds; the file under all is truncated.
  const files: SafetensorsFile[] = [];
  for (let i = 0; i < Number(count); i++) files.push(await open(path));
  const before = lastTensorSum(files.at(-1)!);
  truncateSync(path, 1000);
  console.log(JSON.stringify({ before, newest: afterTruncation(files.at(-1)!), oldest: afterTruncation(files[0]!), open: files.length }));
} else if (mode === "foreign") {
  // A mapping tensormap does not own, after tensormap has installed its guard: the fault is not ours to hide.
  (await open(path)).close();
  const libc = (await loadLibc()) as LibC;
  const size = statSync(path).size;
  const addr = libc.mmap(0n, size, PROT_READ, MAP_PRIVATE, libc.openRead(path), 0);
  const view = new Uint8Array(libc.view(addr, size));
  truncateSync(path, 0);
  console.log(JSON.stringify({ read: view[size - 1] }));
} else if (mode === "debug") {
  const file = await open(path);
  console.log(JSON.stringify({ backend: file.backend }));
  file.close();
}
