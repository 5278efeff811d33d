/** `tensormap inspect PATH [--json] [--filter GLOB]...`: the tensors of a file or sharded checkpoint, totals and metadata. */
import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { withCheckpoint } from "../checkpoint/open.ts";
import type { TensorInfo } from "../format/layout.ts";
import { leafJson } from "../pickle/flatten.ts";
import { describeLeaf } from "../pickle/layout.ts";
import type { Command } from "./command.ts";
import { filterArgs, nameFilter } from "./glob.ts";
import { formatBytes, formatCount, plural, printable, printableJson, shorten, table } from "./format.ts";

/** Longest metadata value the table shows whole (a config or a license can run to pages; --json has it all). */
const SHOWN_VALUE = 200;

/** One tensor as inspect lists it. */
export type Row = TensorInfo & { name: string };

/** Which names to show (`--filter`): every name by default. */
export type Keep = (name: string) => boolean;
const everything: Keep = () => true;

/**
 * Every tensor `keep` keeps, in file order (shard by shard for sharded checkpoints).
 *
 * @example
 * ```ts
 * const total = rows(file).reduce((n, r) => n + r.byteLength, 0);
 * ```
 */
export function rows(file: Checkpoint, keep: Keep = everything): Row[] {
  return file.offsetKeys().filter(keep).map((name) => ({ name, ...file.info(name) }));
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** `n noun` for each count, as one table column: the numbers right-aligned, the nouns after them. */
function countColumn(counts: readonly number[], noun: string): string[] {
  const width = Math.max(...counts.map((n) => formatCount(n).length));
  return counts.map((n) => `${formatCount(n).padStart(width)} ${plural(n, noun)}`);
}

/**
 * The human summary: a table of the first `limit` tensors (all by default) that `keep` keeps, totals, a
 * per-dtype breakdown and the metadata.
 *
 * @example
 * ```ts
 * console.log(summary(file, 10));
 * ```
 */
export function summary(file: Checkpoint, limit = Infinity, keep: Keep = everything): string {
  const all = rows(file, keep);
  const filtered = keep !== everything;
  const sharded = isSharded(file);
  const head = ["name", "dtype", "shape", "size", ...(sharded ? ["file"] : [])];
  const body = all
    .slice(0, limit)
    .map((r) => [printable(r.name), r.dtype, `[${r.shape.join(", ")}]`, formatBytes(r.byteLength), ...(r.file ? [printable(r.file)] : [])]);
  const lines = [table([head, ...body], [3])];
  if (all.length > limit) lines.push(`… ${all.length - limit} more ${plural(all.length - limit, "tensor")}`);

  const byDtype = new Map<string, { tensors: number; params: number; bytes: number }>();
  for (const r of all) {
    const d = byDtype.get(r.dtype) ?? { tensors: 0, params: 0, bytes: 0 };
    d.tensors++;
    d.params += numel(r.shape);
    d.bytes += r.byteLength;
    byDtype.set(r.dtype, d);
  }
  const dtypes = [...byDtype.values()];
  const params = dtypes.reduce((n, d) => n + d.params, 0);
  const bytes = dtypes.reduce((n, d) => n + d.bytes, 0);
  const tensorCells = countColumn(dtypes.map((d) => d.tensors), "tensor");
  const paramCells = countColumn(dtypes.map((d) => d.params), "parameter");
  lines.push(
    "",
    `${formatCount(all.length)}${filtered ? ` of ${formatCount(file.offsetKeys().length)}` : ""} ${plural(all.length, "tensor")}` +
      `${filtered ? " (--filter)" : ""}, ${formatCount(params)} ${plural(params, "parameter")}, ` +
      `${formatBytes(bytes)} (${formatCount(bytes)} ${plural(bytes, "byte")})` +
      (sharded ? ` in ${file.files.length} ${plural(file.files.length, "shard")}` : ""),
    table([...byDtype].map(([dtype, d], i) => [`  ${dtype}`, tensorCells[i]!, paramCells[i]!, formatBytes(d.bytes)]), [3]),
  );
  const meta = file.metadata;
  lines.push(meta ? `metadata: ${Object.entries(meta).map(([k, v]) => `${printable(k)}=${printable(shorten(v, SHOWN_VALUE))}`).join(", ")}` : "metadata: none");
  if (sharded && file.indexMetadata) lines.push(`index metadata: ${printable(shorten(JSON.stringify(file.indexMetadata), SHOWN_VALUE))}`);
  const values = leaves(file, keep);
  if (values.length) lines.push("other values (not tensors):", table(values.map(([k, v]) => [`  ${printable(k)}`, printable(v)]), []));
  return lines.join("\n");
}

/** Whether to show shards: more than one, or an index (with its metadata) behind even one. */
const isSharded = (file: Checkpoint) => file.files.length > 1 || file.indexMetadata !== null;

/** A PyTorch checkpoint's non-tensor values (epoch, hyperparameters, …), rendered; none for safetensors. */
function leaves(file: Checkpoint, keep: Keep): Array<[string, string]> {
  return [...file.leaves].filter(([k]) => keep(k)).map(([k, v]) => [k, describeLeaf(v)]);
}

/**
 * The `--json` document: metadata and every tensor in file order (with its shard, when sharded).
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(toJson(file), null, 2));
 * ```
 */
function toJson(file: Checkpoint, keep: Keep): object {
  const values = [...file.leaves].filter(([k]) => keep(k));
  return {
    metadata: file.metadata,
    ...(isSharded(file) ? { index_metadata: file.indexMetadata } : {}),
    ...(values.length ? { values: Object.fromEntries(values.map(([k, v]) => [k, leafJson(v)])) } : {}),
    tensors: rows(file, keep).map((r) => ({
      name: r.name,
      dtype: r.dtype,
      shape: r.shape,
      data_offsets: r.dataOffsets,
      ...(r.file ? { file: r.file } : {}),
    })),
  };
}

export const inspect: Command = {
  name: "inspect",
  summary: "list a checkpoint's tensors, totals and metadata (safetensors or PyTorch .bin/.pt)",
  usage: "inspect PATH [--json] [--filter GLOB]...",
  help: [
    "Lists every tensor (name, dtype, shape, size) of a safetensors or PyTorch .bin/.pt file, or of a sharded",
    "checkpoint given as its folder or its index file, then the totals per dtype and the metadata.",
    "",
    "options:",
    "  --json         print {\"metadata\", \"index_metadata\" (sharded only), \"values\" (PyTorch non-tensor values",
    "                 as JSON: numbers, strings, booleans, null, lists, objects; bytes, dtypes and other torch",
    "                 objects as text), \"tensors\": [{name, dtype, shape, data_offsets[, file]}] in file order}.",
    "                 data_offsets: [begin, end) in bytes; for safetensors from the start of the data (after the",
    "                 header), as the header says; for PyTorch absolute in the file, and for a strided view the",
    "                 whole span it reads across (end - begin can then exceed its size)",
    "  --filter GLOB  only the tensors and values whose names match GLOB (* any run of characters, dots",
    "                 included; ? one character); repeatable: any GLOB matches; !GLOB leaves names out,",
    "                 e.g. --filter '!optimizer.*'",
  ].join("\n"),
  options: { json: { type: "boolean" }, filter: { type: "string", multiple: true } },
  positionals: { min: 1, max: 1 },
  async run({ values, positionals }, io) {
    const keep = nameFilter(filterArgs(values.filter)) ?? everything;
    const text = await withCheckpoint(positionals[0]!, {}, (file) => (values.json ? printableJson(toJson(file, keep)) : summary(file, Infinity, keep)));
    io.stdout.write(text + "\n");
    return 0;
  },
};
