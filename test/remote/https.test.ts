/**
 * https:// against nginx on loopback presenting a self-signed certificate made at setup. Each runtime reads its
 * extra CA only at start, so a child of the runtime under test does the reading: trusting the certificate, every
 * byte matches the local fixture; not trusting it, a one-line SafetensorsError, never a hang or a stack trace.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runtime } from "../../ffi/runtime.ts";
import { childArgv, removeTranspiled } from "../io/child.ts";
import { fixture } from "../support/fixtures.ts";
import { failure, localDigests } from "../support/remote.ts";
import { NGINX, startNginx, type Nginx } from "../support/servers.ts";
import { OPENSSL, selfSigned, type SelfSigned } from "../support/tls.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";

const CHILD = fileURLToPath(new URL("./https-child.ts", import.meta.url));
const FILES = ["safetensors/tiny-gpt2.safetensors", "sharded/"];

if (!NGINX || !OPENSSL) console.warn("test/remote/https: skipped, needs nginx and openssl (apt-get install -y nginx-light openssl)");

interface ChildLine {
  digests?: Record<string, string>;
  error?: { name: string; code?: string; message: string };
}

/** Runs the child on `urls`, trusting `ca` (a PEM file) the way this runtime reads it, or nothing. */
async function childReads(urls: string[], ca?: string): Promise<{ lines: ChildLine[]; stderr: string; status: number | null }> {
  const env = { ...process.env };
  for (const k of ["NODE_EXTRA_CA_CERTS", "DENO_CERT", "SSL_CERT_FILE"]) delete env[k];
  if (ca) env[runtime === "deno" ? "DENO_CERT" : "NODE_EXTRA_CA_CERTS"] = ca;
  const child = spawn(process.execPath, await childArgv(CHILD, urls), { env, stdio: ["ignore", "pipe", "pipe"] });
  let [stdout, stderr] = ["", ""];
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { lines: stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as ChildLine), stderr, status };
}

describe.skipIf(!NGINX || !OPENSSL)("remote checkpoints over HTTPS (nginx with a self-signed certificate on loopback)", () => {
  let nginx: Nginx;
  let tls: SelfSigned;
  let other: SelfSigned;
  beforeAll(async () => {
    tls = selfSigned();
    other = selfSigned();
    nginx = await startNginx({ tls });
  });
  afterAll(async () => {
    await nginx?.stop();
    tls?.remove();
    other?.remove();
    removeTranspiled();
  });
  const urls = () => FILES.map((f) => `${nginx.httpsUrl}/fixtures/${f}`);

  test("trusting the certificate, a file and a sharded folder over https:// read byte-identically to the local ones", async () => {
    const { lines, stderr, status } = await childReads(urls(), tls.cert);
    expect([status, lines.map((l) => l.error)]).toEqual([0, [undefined, undefined]]);
    for (const [i, f] of FILES.entries()) {
      expect(new Map(Object.entries(lines[i]!.digests!))).toEqual(await localDigests(fixture(f)));
    }
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  test("a certificate nobody trusts (none given, or another one) is a one-line RemoteError naming the URL", async () => {
    for (const ca of [undefined, other.cert]) {
      const { lines, stderr, status } = await childReads(urls().slice(0, 1), ca);
      expect(status).toBe(0);
      const error = lines[0]!.error!;
      expect([error.name, error.code]).toEqual(["SafetensorsError", "RemoteError"]);
      expect(error.message).toContain(urls()[0]);
      expect(error.message).toMatch(/cert|self[- ]signed|issuer|verify/i);
      expect(error.message).not.toContain("\n");
      expect(error.message).not.toContain("not fetched after"); // the first try: no retry can mend it
      expect(stderr).toBe("");
    }
  });

  test("in this process, which does not trust it either: RemoteError, and the same file over plain HTTP still reads", async () => {
    const e = await failure(() => openCheckpoint(urls()[0]!, { remote: { retries: 3, backoffMs: 1 } }));
    expect([e.code, e.message.includes("not fetched after")]).toEqual(["RemoteError", false]);
    using plain = await openCheckpoint(`${nginx.url}/fixtures/${FILES[0]}`);
    expect(plain.keys().length).toBeGreaterThan(0);
  });
});
