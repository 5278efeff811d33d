/**
 * The `tensormap` command line: one table of commands, `node:util` parseArgs, `--help` everywhere, and
 * errors as one line (`error: CODE: message`) with no stack. Exit codes: 0 ok, 1 failure, 2 usage error.
 */
import { parseArgs } from "node:util";
import { type Args, type Command, errorLine, type Io, UsageError } from "./command.ts";
import { convert } from "./convert.ts";
import { demo } from "./demo.ts";
import { inspect } from "./inspect.ts";
import { load } from "./load.ts";
import { verify } from "./verify.ts";

/** Every command, in the order `--help` lists them. A new command is a file plus one entry here. */
const COMMANDS: readonly Command[] = [inspect, verify, load, convert, demo];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "tensormap: inspect, verify and load safetensors checkpoints (single files and sharded folders).",
    "",
    "usage: tensormap COMMAND [ARGS] [--help]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Run `tensormap COMMAND --help` for a command's options.",
  ].join("\n");
}

function commandHelp(c: Command): string {
  return [`usage: tensormap ${c.usage}`, "", c.help, "  -h, --help  show this help"].join("\n");
}

function parse(c: Command, argv: string[]): Args & { help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...c.options, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]!);
  }
  const { help, ...values } = parsed.values as Args["values"];
  const n = parsed.positionals.length;
  if (!help && (n < c.positionals.min || n > c.positionals.max)) {
    throw new UsageError(n < c.positionals.min ? "missing argument" : `unexpected argument '${parsed.positionals[c.positionals.max]}'`);
  }
  return { values, positionals: parsed.positionals, help: help === true };
}

/** The process's own streams, for the real CLI (tests pass their own `Io` to `main`). */
const processIo: Io = {
  stdout: process.stdout,
  stderr: process.stderr,
};

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code.
 * Never throws: every failure becomes one line on stderr.
 *
 * @example
 * ```ts
 * process.exitCode = await main(process.argv.slice(2));
 * ```
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    // A bare `tensormap` is a usage error: the overview goes to stderr, exit 2.
    (name === undefined ? io.stderr : io.stdout).write((topic ? commandHelp(topic) : overview()) + "\n");
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`error: unknown command '${name}'\n${overview()}\n`);
    return 2;
  }
  try {
    const args = parse(command, rest);
    if (args.help) {
      io.stdout.write(commandHelp(command) + "\n");
      return 0;
    }
    return await command.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\nusage: tensormap ${command.usage} (see --help)\n`);
      return 2;
    }
    io.stderr.write(`error: ${errorLine(e)}\n`);
    return 1;
  }
}
