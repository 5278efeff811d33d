/** `tensormap verify PATH...`: checks each file's (or sharded checkpoint's) structure, one line per path. */
import { type Command, errorLine } from "./command.ts";
import { plural, printable } from "./format.ts";
import { withCheckpoint } from "../checkpoint/open.ts";

/**
 * Checks one path the way a loader would meet it: the whole header of every file (shards included) and,
 * for sharded checkpoints, that every shard exists and holds what the index says. Returns the tensor count.
 *
 * @example
 * ```ts
 * const n = await check("model.safetensors"); // throws SafetensorsError on the first problem
 * ```
 */
export async function check(path: string): Promise<number> {
  return withCheckpoint(path, {}, (file) => file.verify());
}

export const verify: Command = {
  name: "verify",
  summary: "check files or sharded checkpoints, one line each",
  usage: "verify PATH...",
  help: [
    "Validates each PATH (a safetensors or PyTorch .bin/.pt file, or a sharded checkpoint's folder or",
    "index) and prints `PATH: ok (N tensors)` or `PATH: CODE: message`. Exits 1 if any fails. Checks what",
    "the format can check: every header, offset and size, every shard present and holding exactly what the",
    "index names. Tensor values are not read (safetensors stores no checksums).",
  ].join("\n"),
  options: {},
  positionals: { min: 1, max: Infinity },
  async run({ positionals }, io) {
    let failed = 0;
    for (const path of positionals) {
      try {
        const n = await check(path);
        io.stdout.write(`${printable(path)}: ok (${n} ${plural(n, "tensor")})\n`);
      } catch (e) {
        failed++;
        io.stdout.write(`${printable(path)}: ${errorLine(e)}\n`);
      }
    }
    return failed ? 1 : 0;
  },
};
