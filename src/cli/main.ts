/**
 * The `tensormap` command line: one table of commands, `node:util` parseArgs, `--help` everywhere, and
 * errors as one line (`error: CODE: message`) with no stack. Exit codes: 0 ok (and when stdout's reader has
 * gone), 1 failure, 2 usage error, 128 + the signal's number when stopped by SIGINT, SIGTERM or SIGHUP.
 */
import { parseArgs } from "node:util";
import { type Args, type Command, errorLine, type Io, type Options, UsageError } from "./command.ts";
import { convert } from "./convert.ts";
import { printable } from "./format.ts";
import { demo } from "./demo.ts";
import { inspect } from "./inspect.ts";
import { load } from "./load.ts";
import { stoppable } from "./signals.ts";
import { closest } from "./suggest.ts";
import { verify } from "./verify.ts";
import { VERSION } from "./version.ts";

/** Every command, in the order `--help` lists them. A new command is a file plus one entry here. */
const COMMANDS: readonly Command[] = [inspect, verify, load, convert, demo];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "tensormap: inspect, verify, load and convert checkpoints, safetensors or PyTorch (.bin/.pt), as single",
    "files or sharded folders.",
    "",
    "usage: tensormap COMMAND [ARGS] [--help]",
    "       tensormap --version",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `tensormap COMMAND --help` for a command's options.",
  ].join("\n");
}

/** What a usage error without a command prints under the error: one line, not the whole overview. */
const SHORT_USAGE = `usage: tensormap COMMAND [ARGS] [--help]  (commands: ${COMMANDS.map((c) => c.name).join(", ")}; or --version)`;

/** The whole name, dashes and all, of the option nearest to a mistyped one (`-jsno` → `--json`). */
function optionLike(arg: string, options: Options): string | undefined {
  const name = closest(arg.replace(/^-+/, "").split("=")[0]!, Object.keys(options));
  return name === undefined ? undefined : `--${name}`;
}

/** `; did you mean X?`, or nothing when nothing is near. */
const didYouMean = (suggestion: string | undefined) => (suggestion === undefined ? "" : `; did you mean ${suggestion}?`);

const HELP_OPTION = "  -h, --help";
const QUIET_OPTION = "  -q, --quiet";

function commandHelp(c: Command): string {
  // The help and quiet lines' text starts in the same column as the command's own option lines' text.
  const column = Math.max(c.help.match(/^ {2}-.*? {2,}(?=\S)/m)?.[0].length ?? 0, (c.progress ? QUIET_OPTION : HELP_OPTION).length + 2);
  const quiet = c.progress ? [`${QUIET_OPTION.padEnd(column)}no progress bar or notes on stderr (errors still)`] : [];
  const help = `${HELP_OPTION.padEnd(column)}show this help`;
  const options = /^options:$/m.test(c.help) ? [] : ["", "options:"];
  return [`usage: tensormap ${usage(c)}`, "", c.help, ...options, ...quiet, help].join("\n");
}

/** The synopsis, with the options every command of its kind gets. */
const usage = (c: Command) => `${c.usage}${c.progress ? " [--quiet]" : ""}`;

/** Where a `--quiet` command's stderr goes: nowhere, and not a terminal, so no bar is drawn. */
const silent = { write: () => {}, isTTY: false };

/**
 * Parses `argv` for `c`. Unknown options, flags given a value, options missing theirs and empty paths are
 * usage errors said here (parseArgs' own messages are long and suggest `--` and quoting).
 */
function parse(c: Command, argv: string[]): Args & { help: boolean; quiet: boolean } {
  const options: Options = { ...c.options, ...(c.progress ? { quiet: { type: "boolean", short: "q" } } : {}), help: { type: "boolean", short: "h" } };
  const parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  for (const t of parsed.tokens) {
    if (t.kind !== "option") continue;
    const type = options[t.name]?.type;
    if (!type) throw new UsageError(`unknown option ${argv[t.index]}${didYouMean(optionLike(argv[t.index]!, options))}`);
    if (type === "boolean" && t.value !== undefined) throw new UsageError(`${t.rawName} takes no value`);
    if (type === "string" && t.value === undefined) throw new UsageError(`${t.rawName} wants a value`);
    // parseArgs takes the next argument as the value even when it looks like an option (`--size -5`).
    if (type === "string" && !t.inlineValue && t.value!.startsWith("-")) {
      throw new UsageError(`${t.rawName} wants a value: write ${t.rawName}=${t.value} if '${t.value}' is meant as one`);
    }
  }
  const { help, quiet, ...values } = parsed.values as Args["values"];
  const n = parsed.positionals.length;
  if (!help && (n < c.positionals.min || n > c.positionals.max)) {
    throw new UsageError(n < c.positionals.min ? "missing argument" : `unexpected argument '${parsed.positionals[c.positionals.max]}'`);
  }
  if (!help && parsed.positionals.includes("")) throw new UsageError("empty path argument");
  // `-` would otherwise be a file named `-`: tensormap reads and writes files only, never stdin or stdout.
  if (!help && parsed.positionals.includes("-")) throw new UsageError("'-' is not a path here (no stdin or stdout): name a file, ./- for one called -");
  return { values, positionals: parsed.positionals, help: help === true, quiet: quiet === true };
}

/** The process's own streams, for the real CLI (tests pass their own `Io` to `main`). */
const processIo: Io = {
  stdout: process.stdout,
  stderr: process.stderr,
};

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code.
 * Never throws: every failure becomes one line on stderr. On the process's own streams (the real CLI),
 * a signal or a closed stdout stops it as `signals.ts` says.
 *
 * @example
 * ```ts
 * process.exitCode = await main(process.argv.slice(2));
 * ```
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  return io === processIo ? stoppable(() => run(argv, io)) : run(argv, io);
}

async function run(argv: readonly string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--version") {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    io.stdout.write((topic ? commandHelp(topic) : overview()) + "\n");
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const names = name?.startsWith("-") ? ["--version", "--help"] : COMMANDS.map((c) => c.name);
    const guess = name === undefined ? undefined : closest(name, names);
    const problem = name === undefined ? "no command given" : `unknown command '${name}'${didYouMean(guess && (guess.startsWith("-") ? guess : `'${guess}'`))}`;
    io.stderr.write(`error: ${printable(problem)}\n${SHORT_USAGE}\n`);
    return 2;
  }
  try {
    const args = parse(command, rest);
    if (args.help) {
      io.stdout.write(commandHelp(command) + "\n");
      return 0;
    }
    return await command.run(args, args.quiet ? { ...io, stderr: silent } : io);
  } catch (e) {
    if (e instanceof UsageError) {
      // The message may quote an argument: escaped like anything else from outside.
      io.stderr.write(`error: ${printable(e.message)}\nusage: tensormap ${usage(command)} (see --help)\n`);
      return 2;
    }
    io.stderr.write(`error: ${errorLine(e)}\n`);
    return 1;
  }
}
