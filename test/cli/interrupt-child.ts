/**
 * Run by interrupt.test.ts as a child process, under the CLI's signal handling (`stoppable`), to be signalled
 * while a write is unfinished:
 *   file PATH    a temporary file of PATH written, not yet renamed into place (as convert's is while it verifies)
 *   folder DIR   DIR's new version half built in its staging folder (as saveSharded's is between shards)
 * Prints "ready" once the write is that far, then waits to be stopped.
 */
import { join } from "node:path";
import { stoppable } from "../../src/cli/signals.ts";
import { writeAtomic, writeFolder, writeTemp } from "../../src/io/commit.ts";

const [mode, path] = process.argv.slice(2) as [string, string];
const bytes = new Uint8Array(1 << 20).fill(7);

/** Says the write is unfinished now, and never settles (a timer keeps the process alive until the signal). */
function readyAndWaiting(): Promise<never> {
  process.stdout.write("ready\n");
  return new Promise(() => setInterval(() => {}, 60_000));
}

process.exitCode = await stoppable(async () => {
  if (mode === "file") {
    writeTemp(path, [bytes]);
    await readyAndWaiting();
  } else if (mode === "folder") {
    await writeFolder(path, async (staging) => {
      writeAtomic(join(staging, "model-00001-of-00002.safetensors"), [bytes]);
      await readyAndWaiting();
    }, () => true);
  }
  return 1;
});
