/**
 * `tensormap demo`: writes a GPT-2-small-shaped model with random weights (one file, and sharded), inspects
 * it and loads it with a progress bar. Later backends add their steps here.
 */
import { existsSync, mkdtempSync, rmdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SafetensorsError } from "../errors.ts";
import type { TensorData } from "../format/writer.ts";
import { open, openSharded } from "../checkpoint/open.ts";
import { saveSharded } from "../checkpoint/save.ts";
import { type Command, UsageError } from "./command.ts";
import { formatBytes, formatCount, formatDuration, formatRate, plural, printable } from "./format.ts";
import { summary } from "./inspect.ts";
import { loadDevice, loadReport, touchAll } from "./load.ts";
import { pageCacheState } from "./page-cache.ts";
import { fillRandom } from "./random.ts";

/**
 * GPT-2 small's tensor names and shapes (148 tensors, 124,439,808 parameters at the defaults).
 *
 * @example
 * ```ts
 * const tiny = gpt2Shapes(2, 1000); // two blocks, a 1000-token vocabulary
 * ```
 */
export function gpt2Shapes(layers = 12, vocab = 50257, width = 768, context = 1024): [string, number[]][] {
  const shapes: [string, number[]][] = [
    ["wte.weight", [vocab, width]],
    ["wpe.weight", [context, width]],
  ];
  for (let i = 0; i < layers; i++) {
    const h = `h.${i}`;
    shapes.push(
      [`${h}.ln_1.weight`, [width]], [`${h}.ln_1.bias`, [width]],
      [`${h}.attn.c_attn.weight`, [width, 3 * width]], [`${h}.attn.c_attn.bias`, [3 * width]],
      [`${h}.attn.c_proj.weight`, [width, width]], [`${h}.attn.c_proj.bias`, [width]],
      [`${h}.ln_2.weight`, [width]], [`${h}.ln_2.bias`, [width]],
      [`${h}.mlp.c_fc.weight`, [width, 4 * width]], [`${h}.mlp.c_fc.bias`, [4 * width]],
      [`${h}.mlp.c_proj.weight`, [4 * width, width]], [`${h}.mlp.c_proj.bias`, [width]],
    );
  }
  shapes.push(["ln_f.weight", [width]], ["ln_f.bias", [width]]);
  return shapes;
}

/**
 * Random F32 tensors for `shapes`, all views into one buffer. xorshift32 fills the bits; keeping the
 * mantissa and sign random and the exponent fixed gives finite values of magnitude 2^-7..2^-6, fast.
 *
 * @example
 * ```ts
 * const tensors = randomTensors(gpt2Shapes(1, 100), 42);
 * ```
 */
export function randomTensors(shapes: readonly (readonly [string, readonly number[]])[], seed = 0x2545f491): Map<string, TensorData> {
  const total = shapes.reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
  const bits = fillRandom(new Uint32Array(total), seed, 0x807fffff, 0x3c000000);
  const tensors = new Map<string, TensorData>();
  let at = 0;
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { dtype: "F32", shape, data: new Float32Array(bits.buffer, at * 4, n) });
    at += n;
  }
  return tensors;
}

function positiveInt(value: unknown, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${option} wants a positive integer, got '${value}'`);
  return n;
}

export const demo: Command = {
  name: "demo",
  summary: "write a GPT-2-small-shaped model, inspect it and load it",
  usage: "demo [--dir DIR] [--keep] [--max-shard-size SIZE] [--layers N] [--vocab N]",
  help: [
    "Writes a GPT-2-small-shaped model (124M F32 parameters, random weights) as one file and as shards,",
    "prints the inspect summary, then loads both with a progress bar and reports GB/s and the backend.",
    "",
    "options:",
    "  --dir DIR              where to write (default: a new folder in $TMPDIR, removed afterwards)",
    "  --keep                 keep the files afterwards (default: remove them)",
    "  --max-shard-size SIZE  shard size, e.g. 200MB or 1GiB (default: 200MB); a tensor larger than SIZE",
    "                         gets a shard of its own",
    "  --layers N             transformer blocks (default: 12)",
    "  --vocab N              vocabulary size (default: 50257)",
  ].join("\n"),
  options: {
    dir: { type: "string" },
    keep: { type: "boolean" },
    "max-shard-size": { type: "string" },
    layers: { type: "string" },
    vocab: { type: "string" },
  },
  progress: true,
  positionals: { min: 0, max: 0 },
  async run({ values }, io) {
    const shapes = gpt2Shapes(positiveInt(values.layers, "layers"), positiveInt(values.vocab, "vocab"));
    const maxShardSize = typeof values["max-shard-size"] === "string" ? values["max-shard-size"] : "200MB";
    // Lines name --dir and --max-shard-size as given: each is escaped (the summary's own lines break it up).
    const say = (text: string) => io.stdout.write(text.split("\n").map(printable).join("\n") + "\n");
    const timed = async <T>(work: () => T | Promise<T>): Promise<[T, number]> => {
      const t0 = performance.now();
      const result = await work();
      return [result, (performance.now() - t0) / 1000];
    };

    if (typeof values.dir === "string") requireFolderOrNothing(values.dir);
    const [tensors, genSeconds] = await timed(() => randomTensors(shapes));
    // Made only once the arguments are known good: a usage error leaves nothing behind.
    const dir = typeof values.dir === "string" ? values.dir : mkdtempSync(join(tmpdir(), "tensormap-demo-"));
    const bytes = [...tensors.values()].reduce((n, t) => n + t.data.byteLength, 0);
    const params = bytes / 4;
    say(`generated ${formatCount(tensors.size)} ${plural(tensors.size, "tensor")}, ${formatCount(params)} F32 ${plural(params, "parameter")} (${formatBytes(bytes)}) in ${formatDuration(genSeconds)}`);

    const single = join(dir, "single");
    const sharded = join(dir, "sharded");
    // The folders the demo makes go afterwards (if empty); ones that were there before stay.
    const made = [single, sharded].filter((f) => !existsSync(f));
    if (typeof values.dir !== "string" || !existsSync(dir)) made.push(dir);
    const written: string[] = [];
    try {
      const [singleFiles, saveSeconds] = await timed(() => saveSharded(single, tensors, { maxShardSize: bytes }));
      written.push(...singleFiles);
      say(`wrote ${join(single, "model.safetensors")}: ${formatRate(bytes, saveSeconds)}`);
      const [files, shardSeconds] = await timed(() => saveSharded(sharded, tensors, { maxShardSize, metadata: { format: "pt" } }));
      written.push(...files);
      const shards = Math.max(1, files.length - 1);
      say(`wrote ${shards} ${plural(shards, "shard")} of at most ${maxShardSize}${files.length > 1 ? " + index" : ""} to ${sharded}: ${formatRate(bytes, shardSeconds)}`);

      // Before the files are opened (and mapped): just written, their pages are expected to be in memory.
      const singleCache = await pageCacheState(join(single, "model.safetensors"));
      const shardedCache = await pageCacheState(sharded);
      const shardedFile = await openSharded(sharded);
      try {
        say("");
        say(summary(shardedFile, 8));
        say("");
        const singleFile = await open(join(single, "model.safetensors"));
        try {
          say(`load ${join(single, "model.safetensors")}`);
          const a = touchAll(singleFile, io.stderr, "single");
          say("  " + loadReport(a, `backend ${singleFile.backend}`, singleCache));
          say(`load ${sharded}`);
          const b = touchAll(shardedFile, io.stderr, "sharded");
          say("  " + loadReport(b, `backend ${shardedFile.backend}`, shardedCache));
          if (a.checksum !== b.checksum) throw new Error("single and sharded loads read different bytes");
          say(`load ${sharded} --device auto`);
          for (const line of (await loadDevice(sharded, { device: "auto" }, io)).split("\n")) say(`  ${line}`);
        } finally {
          singleFile.close();
        }
      } finally {
        shardedFile.close();
      }
    } finally {
      if (values.keep) say(`kept ${dir}`);
      else {
        // Only what the demo wrote: --dir may name a folder that holds other things.
        for (const path of written) rmSync(path, { force: true });
        for (const folder of made) {
          try {
            rmdirSync(folder);
          } catch {
            // Not empty (something else was put there meanwhile), or never made.
          }
        }
        const files = `${formatCount(written.length)} ${plural(written.length, "file")}`;
        say(existsSync(dir) ? `removed the ${files} it wrote in ${dir} (--keep keeps them)` : `removed ${dir} (${files}; --keep keeps them)`);
      }
    }
    return 0;
  },
};

/** `--dir` must be a folder or not exist yet: checked before minutes of generating, not after. */
function requireFolderOrNothing(dir: string): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new SafetensorsError("ENOTDIR", `--dir ${dir} is not a folder`);
}
