/** `tensormap verify PATH...`: checks each file's (or sharded checkpoint's) structure, one line per path. */
import { type Command, errorLine, errorParts } from "./command.ts";
import { plural, printable, printableJson } from "./format.ts";
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
  usage: "verify PATH... [--json]",
  help: [
    "Validates each PATH (a safetensors or PyTorch .bin/.pt file, or a sharded checkpoint's folder or",
    "index) and prints `PATH: ok (N tensors)` or `PATH: CODE: message`. Exits 1 if any fails. Checks what",
    "the format can check: every header, offset and size, every shard present and holding exactly what the",
    "index names. Tensor values are not read (safetensors stores no checksums).",
    "",
    "options:",
    '  --json      print [{"path", "ok": true, "tensors": N} or {"path", "ok": false, "code", "message"}],',
    "              one per PATH in order",
  ].join("\n"),
  options: { json: { type: "boolean" } },
  positionals: { min: 1, max: Infinity },
  async run({ values, positionals }, io) {
    const results: object[] = [];
    let failed = 0;
    for (const path of positionals) {
      try {
        const n = await check(path);
        if (values.json) results.push({ path, ok: true, tensors: n });
        else io.stdout.write(`${printable(path)}: ok (${n} ${plural(n, "tensor")})\n`);
      } catch (e) {
        failed++;
        if (values.json) results.push({ path, ok: false, ...errorParts(e) });
        else io.stdout.write(`${printable(path)}: ${errorLine(e)}\n`);
      }
    }
    if (values.json) io.stdout.write(printableJson(results) + "\n");
    return failed ? 1 : 0;
  },
};
