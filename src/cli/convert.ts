/** `tensormap convert IN OUT [--max-shard-size SIZE]`: PyTorch pickle checkpoints to safetensors. */
import { statSync } from "node:fs";
import { parseSize } from "../format/sharded.ts";
import { convert as convertCheckpoint } from "../convert/convert.ts";
import { type Command, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, plural, printable } from "./format.ts";
import { filterArgs, nameFilter } from "./glob.ts";
import { Progress } from "./progress.ts";

export const convert: Command = {
  name: "convert",
  summary: "convert PyTorch .bin/.pt checkpoints to safetensors",
  usage: "convert IN OUT [--max-shard-size SIZE] [--filter GLOB]...",
  help: [
    "Reads IN without executing it (an allowlisted unpickler) and writes safetensors with metadata",
    '{"format": "pt"}. IN a .bin/.pt file: OUT is the .safetensors file. IN a folder or a',
    "pytorch_model.bin.index.json of pickle shards: OUT is a folder of model-0000N-of-0000M.safetensors",
    "shards and model.safetensors.index.json. Output is verified by re-reading it; on error none is left.",
    "",
    "options:",
    '  --max-shard-size SIZE  largest shard (sharded output), bytes or "5GB"/"5GiB"; default 5GB; a',
    "                         tensor larger than SIZE gets a shard of its own (tensors are never split)",
    "  --filter GLOB          only the tensors whose names match GLOB (* any run of characters, dots",
    "                         included; ? one character); repeatable: any GLOB matches; !GLOB leaves",
    "                         names out, e.g. --filter '!optimizer.*'",
  ].join("\n"),
  options: { "max-shard-size": { type: "string" }, filter: { type: "string", multiple: true } },
  progress: true,
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }, io) {
    const [inPath, outPath] = positionals as [string, string];
    const maxShardSize = values["max-shard-size"] as string | undefined;
    const keep = nameFilter(filterArgs(values.filter));
    if (maxShardSize !== undefined) {
      try {
        parseSize(maxShardSize);
      } catch (e) {
        throw new UsageError(`--max-shard-size: ${(e as Error).message}`);
      }
      if (!inPath.endsWith(".json") && isFile(inPath)) throw new UsageError("--max-shard-size applies to sharded input (a folder or an index file)");
    }
    let bar: Progress | undefined;
    let seen = 0;
    const result = await convertCheckpoint(inPath, outPath, {
      maxShardSize,
      keep,
      onProgress: (done, total) => {
        // Every byte is counted twice: once written, once read back to verify.
        bar ??= new Progress(io.stderr, "convert + verify", total);
        bar.add(done - seen);
        seen = done;
      },
    });
    const seconds = bar?.finish() ?? 0;
    const done = `${formatCount(result.tensors)} ${plural(result.tensors, "tensor")}, ${formatBytes(result.bytes)} in ${formatDuration(seconds)}`;
    io.stdout.write(`${done} → ${result.files.map(printable).join(", ")}\n`);
    if (result.dropped.length > 0) io.stderr.write(`${droppedNote(result.dropped)}\n`);
    return 0;
  },
};

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Says which non-tensor values the conversion left out (the first few by name). */
function droppedNote(names: string[]): string {
  const shown = names.slice(0, 5).map(printable).join(", ") + (names.length > 5 ? `, … ${names.length - 5} more` : "");
  return `note: ${formatCount(names.length)} non-tensor ${plural(names.length, "value")} not written (safetensors holds tensors only): ${shown}`;
}
