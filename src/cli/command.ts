/**
 * What every CLI command is: a name, its help, its `node:util` parseArgs options and a `run` that returns the
 * exit code. `main.ts` holds the one table of commands; each command lives in its own file.
 */
import type { ParseArgsConfig } from "node:util";
import { type ErrorCode, fromSystemError, SafetensorsError } from "../errors.ts";
import { printable } from "./format.ts";

/** Where a command writes. Tests pass their own to capture output; the real CLI passes the process streams. */
export interface Output {
  write(text: string): void;
  /** True when a person is watching: progress bars animate only then. */
  readonly isTTY?: boolean;
  /** Terminal width, when known. */
  readonly columns?: number;
}

export interface Io {
  stdout: Output;
  stderr: Output;
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parsed arguments as a command sees them: option values by name, and the positionals. */
export interface Args {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The synopsis after `tensormap `, e.g. `inspect PATH [--json]`. */
  usage: string;
  /** Longer help: what it does, then one line per option. */
  help: string;
  options: Options;
  /** It draws a progress bar on stderr: it gets `--quiet`, which silences the bar and notes (not errors). */
  progress?: boolean;
  /** How many positionals (paths) the command takes. */
  positionals: { min: number; max: number };
  run(args: Args, io: Io): Promise<number>;
}

/** A mistake in how the command was called: printed with the usage line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * The code and the one-line message of anything thrown: a SafetensorsError's code, a system call's errno
 * name, another error's name. Never a stack. Not escaped: for `--json`; {@link errorLine} for a terminal.
 *
 * @example
 * ```ts
 * errorParts(new TypeError("bad\nmore")); // { code: "TypeError", message: "bad" }
 * ```
 */
export function errorParts(e: unknown): { code: string; message: string } {
  const err = e instanceof SafetensorsError ? e : systemError(e) ?? e;
  const code = err instanceof SafetensorsError ? err.code : err instanceof Error ? err.name : "Error";
  const text = err instanceof Error ? err.message : String(err);
  // Ours are one line by design (a newline in one is quoted content); another error's later lines are its detail.
  const line = (err instanceof SafetensorsError ? text : text.split("\n")[0]!).trim() || "unknown error";
  const meaning = err instanceof SafetensorsError ? MEANINGS[err.code] : undefined;
  return { code, message: meaning ? `${meaning} (${line})` : line };
}

/**
 * What a code means to someone who gave the wrong file. HeaderTooLarge is what any file that is neither zip
 * nor pickle nor safetensors meets first: a text file's first 8 characters read as a huge header length.
 */
const MEANINGS: Partial<Record<ErrorCode, string>> = {
  HeaderTooLarge: "not a safetensors or PyTorch file",
};

/**
 * `CODE: message` on one line for anything thrown ({@link errorParts}). What the message quotes from a file or
 * the command line is escaped ({@link printable}): a newline in a tensor name shows as `\u000a` rather than
 * cutting the line.
 *
 * @example
 * ```ts
 * errorLine(new SafetensorsError("HeaderTooSmall", "file is 3 bytes")); // "HeaderTooSmall: file is 3 bytes"
 * ```
 */
export function errorLine(e: unknown): string {
  const { code, message } = errorParts(e);
  return printable(`${code}: ${message}`);
}

/** A Node-style fs error that escaped unconverted (it names its call), said as `cannot CALL PATH: reason`. */
function systemError(e: unknown): SafetensorsError | undefined {
  const { syscall, path } = (e ?? {}) as { syscall?: unknown; path?: unknown };
  if (typeof syscall !== "string") return undefined;
  return fromSystemError(e, typeof path === "string" ? `cannot ${syscall} ${path}` : `cannot ${syscall}`);
}
