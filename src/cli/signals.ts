/**
 * How the `tensormap` process stops when it is told to, or when its reader goes away: Ctrl-C, SIGTERM and
 * SIGHUP remove the temporary files the command was writing and exit with 128 + the signal's number, as a
 * shell reports a process the signal killed; a closed stdout (`tensormap inspect … | head`) ends it quietly.
 */
import { discardUnfinished } from "../io/commit.ts";

/** The signals handled, each with its exit status: 128 + its number. */
const STATUS: readonly [NodeJS.Signals, number][] = [["SIGHUP", 129], ["SIGINT", 130], ["SIGTERM", 143]];

/**
 * Runs `command` (the real CLI's work; tests calling `main` keep their runner's handlers) with the handlers
 * installed, and returns its exit code. The runtime hands a signal to its handler only when the event loop
 * next turns: one that arrives while a file is written synchronously takes effect after that write.
 *
 * @example
 * ```ts
 * process.exitCode = await stoppable(() => convertCommand(args));
 * ```
 */
export async function stoppable(command: () => Promise<number>): Promise<number> {
  for (const [signal, status] of STATUS) {
    process.on(signal, () => {
      discardUnfinished();
      process.exit(status);
    });
  }
  // The reader closed the pipe: nothing more can be said, and that is not a failure (`yes | head` exits 0 too).
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    discardUnfinished();
    process.exit(0);
  });
  const status = await command();
  // A signal caught during the command's last synchronous stretch still waits for its handler, which would
  // never run: the process would exit 0 as if not told to stop. Two timer turns let the loop poll for it (the
  // first timer may be due already, and fire before the loop polls).
  for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
  return status;
}
