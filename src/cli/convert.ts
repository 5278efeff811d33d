/** `tensormap convert IN OUT [--max-shard-size SIZE] [--dtype D]`: PyTorch pickles to safetensors; safetensors re-sharded or cast. */
import { CAST_TARGETS, type CastTarget } from "../format/cast.ts";
import { parseSize } from "../format/sharded.ts";
import { convert as convertCheckpoint } from "../convert/convert.ts";
import { type Command, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, plural, printable } from "./format.ts";
import { filterArgs, nameFilter } from "./glob.ts";
import { Progress } from "./progress.ts";

export const convert: Command = {
  name: "convert",
  summary: "convert PyTorch .bin/.pt checkpoints to safetensors; re-shard or cast safetensors",
  usage: "convert IN OUT [--max-shard-size SIZE] [--dtype bf16|f16|f32] [--filter GLOB]...",
  help: [
    "Reads IN, a PyTorch .bin/.pt checkpoint (without executing it: an allowlisted unpickler; written with",
    'metadata {"format": "pt"}) or safetensors (its metadata kept), and writes safetensors. IN a file: OUT is',
    "the .safetensors file. IN a folder or an index of shards, or --max-shard-size given: OUT is a folder of",
    "model-0000N-of-0000M.safetensors shards and model.safetensors.index.json (IN's own folder re-shards in",
    "place). Output is verified by re-reading it; on error none is left.",
    "",
    "options:",
    '  --max-shard-size SIZE  largest shard, bytes or "5GB"/"5GiB"; default 5GB; a tensor larger than SIZE',
    "                         gets a shard of its own (tensors are never split)",
    "  --dtype D              cast every F64, F32, F16 and BF16 tensor to bf16, f16 or f32, rounding to",
    "                         nearest even as torch's .to() does (integers and bool are kept)",
    "  --filter GLOB          only the tensors whose names match GLOB (* any run of characters, dots",
    "                         included; ? one character); repeatable: any GLOB matches; !GLOB leaves",
    "                         names out, e.g. --filter '!optimizer.*'",
  ].join("\n"),
  options: { "max-shard-size": { type: "string" }, dtype: { type: "string" }, filter: { type: "string", multiple: true } },
  progress: true,
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }, io) {
    const [inPath, outPath] = positionals as [string, string];
    const maxShardSize = values["max-shard-size"] as string | undefined;
    const keep = nameFilter(filterArgs(values.filter));
    const dtype = dtypeArg(values.dtype);
    if (maxShardSize !== undefined) {
      try {
        parseSize(maxShardSize);
      } catch (e) {
        throw new UsageError(`--max-shard-size: ${(e as Error).message}`);
      }
      if (outPath.endsWith(".safetensors")) throw new UsageError("--max-shard-size writes a folder of shards: OUT names a .safetensors file");
    }
    let bar: Progress | undefined;
    let seen = 0;
    const result = await convertCheckpoint(inPath, outPath, {
      maxShardSize,
      dtype,
      keep,
      onProgress: (done, total) => {
        // Every byte is counted twice: once written, once read back to verify.
        bar ??= new Progress(io.stderr, "convert + verify", total);
        bar.add(done - seen);
        seen = done;
      },
    });
    const seconds = bar?.finish() ?? 0;
    const cast = dtype ? ` (${formatCount(result.cast)} cast to ${dtype})` : "";
    const done = `${formatCount(result.tensors)} ${plural(result.tensors, "tensor")}${cast}, ${formatBytes(result.bytes)} in ${formatDuration(seconds)}`;
    io.stdout.write(`${done} → ${result.files.map(printable).join(", ")}\n`);
    if (result.dropped.length > 0) io.stderr.write(`${droppedNote(result.dropped)}\n`);
    return 0;
  },
};

/** `--dtype bf16|f16|f32` (any case) as the dtype it names. */
function dtypeArg(value: unknown): CastTarget | undefined {
  if (value === undefined) return undefined;
  const dtype = String(value).toUpperCase() as CastTarget;
  if (!CAST_TARGETS.includes(dtype)) throw new UsageError(`--dtype wants one of ${CAST_TARGETS.map((d) => d.toLowerCase()).join(", ")}, got '${value}'`);
  return dtype;
}

/** Says which non-tensor values the conversion left out (the first few by name). */
function droppedNote(names: string[]): string {
  const shown = names.slice(0, 5).map(printable).join(", ") + (names.length > 5 ? `, … ${names.length - 5} more` : "");
  return `note: ${formatCount(names.length)} non-tensor ${plural(names.length, "value")} not written (safetensors holds tensors only): ${shown}`;
}
