/**
 * bench/gpu.ts's one table: rows of measured loads with their rates, ratios, checks and targets, as aligned text
 * for the terminal and as markdown, plus the files written to `$OUT`.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** One line of the table: a loader (or the ceiling) under one page-cache state. */
export interface Row {
  loader: string;
  cache: "warm" | "cold" | "";
  seconds?: number;
  /** Bytes moved, for the rate. */
  bytes?: number;
  /** Rate given directly (the ceilings measure their own). */
  gbps?: number;
  firstMs?: number;
  /** How many times tensormap's default mode (same cache state) is faster than this row. */
  tensormapFaster?: number;
  check?: string;
  /** Targets this row is judged on, with the verdict: "≥ 90% of pinned: 86% MISSED". */
  target?: string;
  /** Why a figure is missing, or what is special about it. */
  note?: string;
}

/** The row's rate in GB/s (10^9 bytes a second). */
export function rate(row: Row): number | undefined {
  if (row.gbps !== undefined) return row.gbps;
  return row.seconds && row.bytes ? row.bytes / row.seconds / 1e9 : undefined;
}

const COLUMNS = ["loader", "cache", "time s", "GB/s", "of pinned", "first tensor ms", "tensormap ×", "check", "target / note"];
/** Columns whose figures align right. */
const NUMERIC = new Set([2, 3, 4, 5, 6]);

function cells(row: Row, pinnedGbps: number | undefined): string[] {
  const gbps = rate(row);
  return [
    row.loader,
    row.cache,
    row.seconds === undefined ? "" : row.seconds.toFixed(3),
    gbps === undefined ? "" : gbps.toFixed(2),
    gbps === undefined || !pinnedGbps ? "" : `${((100 * gbps) / pinnedGbps).toFixed(0)}%`,
    row.firstMs === undefined ? "" : row.firstMs.toFixed(1),
    row.tensormapFaster === undefined ? "" : `${row.tensormapFaster.toFixed(2)}×`,
    row.check ?? "",
    [row.target, row.note].filter(Boolean).join("; "),
  ];
}

/**
 * The table as aligned text and as markdown.
 *
 * @example
 * ```ts
 * const { text } = renderTable([{ loader: "pinned cudaMemcpyAsync", cache: "", gbps: 53.1 }], 53.1);
 * console.log(text);
 * ```
 */
export function renderTable(rows: Row[], pinnedGbps: number | undefined): { text: string; markdown: string } {
  const body = rows.map((r) => cells(r, pinnedGbps));
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...body.map((b) => b[i]!.length)));
  const pad = (line: string[]) => line.map((c, i) => (NUMERIC.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const text = [pad(COLUMNS), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(pad)].join("\n");
  const md = (line: string[]) => `| ${line.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`;
  const rule = `|${COLUMNS.map((_, i) => (NUMERIC.has(i) ? " ---: " : " --- ")).join("|")}|`;
  return { text, markdown: [md(COLUMNS), rule, ...body.map(md)].join("\n") };
}

/**
 * Writes `gpu.json` and `gpu.md` into `dir` (made if missing); returns their paths.
 *
 * @example
 * ```ts
 * writeResults(process.env.OUT!, { rows }, markdown); // [".../gpu.json", ".../gpu.md"]
 * ```
 */
export function writeResults(dir: string, json: object, markdown: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, "gpu.json"), join(dir, "gpu.md")];
  writeFileSync(files[0]!, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(files[1]!, `${markdown}\n`);
  return files;
}
