/** `tensormap load PATH`: reads every tensor the way a program would, with a progress bar and the rate. */
import type { Backend } from "../io/source.ts";
import { type Command, type Output, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, formatRate } from "./format.ts";
import { type Checkpoint, withPath } from "./open-path.ts";
import { Progress } from "./progress.ts";

const PAGE = 4096;
const BACKENDS = ["auto", "mmap", "read"] as const;

export interface LoadResult {
  tensors: number;
  bytes: number;
  seconds: number;
  /** Sum of the touched bytes: keeps the reads observable, and equal runs give equal sums. */
  checksum: number;
}

/**
 * Gets every tensor in file order and reads one byte per 4 KiB page of it, so mapped files fault in
 * every page and copying backends copy everything.
 *
 * @example
 * ```ts
 * const { bytes, seconds } = touchAll(file, process.stderr);
 * ```
 */
export function touchAll(file: Checkpoint, progressTo: Output, label = "load"): LoadResult {
  const names = file.offsetKeys();
  const total = names.reduce((n, name) => n + file.info(name).byteLength, 0);
  const bar = new Progress(progressTo, label, total);
  let checksum = 0;
  for (const name of names) {
    const bytes = file.tensor(name).bytes;
    for (let i = 0; i < bytes.length; i += PAGE) checksum += bytes[i]!;
    bar.add(bytes.byteLength);
  }
  return { tensors: names.length, bytes: total, seconds: bar.finish(), checksum };
}

/**
 * The totals line `load` prints.
 *
 * @example
 * ```ts
 * loadReport(touchAll(file, process.stderr), file.backend);
 * ```
 */
export function loadReport(r: LoadResult, backend: string): string {
  return `${formatCount(r.tensors)} tensors, ${formatBytes(r.bytes)} in ${formatDuration(r.seconds)}: ${formatRate(r.bytes, r.seconds)} (backend ${backend})`;
}

export const load: Command = {
  name: "load",
  summary: "read every tensor and report the throughput",
  usage: "load PATH [--backend auto|mmap|read]",
  help: [
    "Opens PATH (a safetensors file, or a sharded checkpoint's folder or index) and reads every tensor in",
    "file order, touching each 4 KiB page, with a progress bar on stderr; then prints bytes, time and GB/s.",
    "",
    "options:",
    "  --backend B  auto (default: mmap where FFI is available), mmap, or read (positional reads)",
  ].join("\n"),
  options: { backend: { type: "string" } },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals }, io) {
    const backend = (values.backend ?? "auto") as Backend | "auto";
    if (!BACKENDS.includes(backend)) throw new UsageError(`--backend wants one of ${BACKENDS.join(", ")}, got '${backend}'`);
    io.stdout.write((await withPath(positionals[0]!, { backend }, (file) => loadReport(touchAll(file, io.stderr), file.backend))) + "\n");
    return 0;
  },
};
