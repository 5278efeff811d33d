/**
 * Run by https.test.ts under the runtime under test, with the CA it should trust in the environment (read only at
 * start: NODE_EXTRA_CA_CERTS for Node and Bun, DENO_CERT for Deno). For each URL argument prints one JSON line:
 * `{"digests": {NAME: SHA256}}`, or `{"error": {"name", "code", "message"}}` for what opening or fetching threw.
 */
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { digests } from "../support/remote.ts";

for (const url of process.argv.slice(2)) {
  try {
    using model = await openCheckpoint(url, { remote: { retries: 3, backoffMs: 1 } });
    process.stdout.write(`${JSON.stringify({ digests: Object.fromEntries(await digests(model)) })}\n`);
  } catch (e) {
    const err = e as Error;
    const code = e instanceof SafetensorsError ? e.code : undefined;
    process.stdout.write(`${JSON.stringify({ error: { name: err?.name, code, message: err?.message ?? String(e) } })}\n`);
  }
}
