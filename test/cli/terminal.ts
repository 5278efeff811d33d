import { main } from "../../src/cli/main.ts";
import type { CliResult } from "../support/cli.ts";

/**
 * Runs `tensormap ARGS` in-process with stderr as an 80-column terminal (where a progress bar is drawn) and
 * stdout captured.
 *
 * @example
 * ```ts
 * const { stderr } = await onTerminal("load", "model.safetensors"); // starts with "\rload "
 * ```
 */
export async function onTerminal(...args: string[]): Promise<CliResult> {
  const out = { stdout: "", stderr: "" };
  const code = await main(args, {
    stdout: { write: (s: string) => void (out.stdout += s) },
    stderr: { isTTY: true, columns: 80, write: (s: string) => void (out.stderr += s) },
  });
  return { code, ...out };
}
