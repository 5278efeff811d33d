import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/main.ts";
import { runtime } from "../../ffi/runtime.ts";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const BIN = fileURLToPath(new URL("../../bin/tensormap.js", import.meta.url));

/**
 * Runs `tensormap ARGS`. Under Bun and Deno: the real launcher as a child process of the same runtime.
 * Under Node (which runs the launcher only from a tsc build): `main()` in-process with captured streams.
 */
export async function cli(...args: string[]): Promise<CliResult> {
  if (runtime === "node") {
    const out = { stdout: "", stderr: "" };
    const code = await main(args, {
      stdout: { write: (s: string) => void (out.stdout += s) },
      stderr: { write: (s: string) => void (out.stderr += s) },
    });
    return { code, ...out };
  }
  const argv = runtime === "deno" ? ["run", "-A", BIN, ...args] : [BIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    child.stdout.on("data", (d) => (out.stdout += d));
    child.stderr.on("data", (d) => (out.stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, ...out }));
  });
}

/** Error output must be exactly one line, `error: CODE: message`, and never a stack trace. */
export function oneErrorLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  if (lines.length !== 1 || !lines[0]!.startsWith("error: ") || /\n\s+at /.test(stderr)) {
    throw new Error(`expected one error line, got:\n${stderr}`);
  }
  return lines[0]!;
}
