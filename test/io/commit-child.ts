/**
 * Run by commit.test.ts as a child process of the test's runtime, to be SIGKILLed in the middle of a write.
 *   folder DIR KILL_AT exchange|rename   writes the new checkpoint (commit-fixture.ts) over DIR with
 *                                        writeFolder, and SIGKILLs itself at event KILL_AT (every step of
 *                                        the commit, and halfway through and after each file); -1: never
 *   file-loop FILE                       saves FILE over and over until killed from outside
 *   file-half FILE                       SIGKILLs itself halfway through writing FILE
 * Prints one JSON line when it finishes: the events it went through.
 */
import { writeAtomic, writeFolder } from "../../src/io/commit.ts";
import { replaces, writeNew } from "./commit-fixture.ts";

const [mode, path, killAt = "-1", swap = "exchange"] = process.argv.slice(2) as [string, string, string?, string?];
const events: string[] = [];

/** Records an event; the KILL_AT-th ends the process on the spot, as a crash or the OOM killer would. */
function event(what: string): void {
  if (events.length === Number(killAt)) process.kill(process.pid, "SIGKILL");
  events.push(what);
}

const chunk = new Uint8Array(1 << 20).fill(7);

if (mode === "folder") {
  await writeFolder(path, (staging) => writeNew(staging, event), replaces, { onStep: event, exchange: swap === "exchange" });
} else if (mode === "file-loop") {
  process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
  for (;;) writeAtomic(path, Array.from({ length: 64 }, () => chunk));
} else if (mode === "file-half") {
  writeAtomic(path, (function* () {
    yield chunk;
    process.kill(process.pid, "SIGKILL");
    yield chunk;
  })());
}
process.stdout.write(`${JSON.stringify({ events })}\n`);
