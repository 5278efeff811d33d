/**
 * Run by commit.test.ts as a child process of the test's runtime, to be SIGKILLed in the middle of a write.
 *   file-loop FILE   saves FILE over and over until killed from outside
 *   file-half FILE   SIGKILLs itself halfway through writing FILE
 */
import { writeAtomic } from "../../src/io/commit.ts";

const [mode, path] = process.argv.slice(2) as [string, string];
const chunk = new Uint8Array(1 << 20).fill(7);

if (mode === "file-loop") {
  process.stdout.write(`${JSON.stringify({ pid: process.pid })}\n`);
  for (;;) writeAtomic(path, Array.from({ length: 64 }, () => chunk));
} else if (mode === "file-half") {
  writeAtomic(path, (function* () {
    yield chunk;
    process.kill(process.pid, "SIGKILL");
    yield chunk;
  })());
}
