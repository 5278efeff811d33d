/**
 * A real S3-compatible server on loopback for the remote tests: @20minutes/s3rver (a maintained fork of s3rver that
 * verifies SigV4 signatures; s3rver 3.x accepts any V4 signature of a known key id), run as a child process under
 * Node whatever runtime the tests use, with a request id on every answer and no anonymous access.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runtime } from "../../ffi/runtime.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CHILD = join(ROOT, "test/support/s3-server-child.cjs");

/** The only key pair s3rver knows (its built-in account). */
export const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

export interface S3Server {
  /** `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL_S3` names; buckets are path-style under it. */
  endpoint: string;
  /** Requests the server has seen so far, by path (`/BUCKET/KEY`, as sent). */
  requests(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Node for the server: this process under Node, else the checkout's pinned Node, else the one on PATH. */
function nodeBinary(): string {
  if (runtime === "node") return process.execPath;
  const pinned = join(ROOT, "node_modules/node/bin/node");
  return existsSync(pinned) ? pinned : "node";
}

/**
 * Starts the server with `buckets` (bucket → key → local file, copied in) and resolves once it listens.
 *
 * @example
 * ```ts
 * const s3 = await startS3Server({ models: { "tiny.safetensors": fixture("safetensors/tiny-gpt2.safetensors") } });
 * process.env.AWS_ENDPOINT_URL_S3 = s3.endpoint; // then s3://models/tiny.safetensors
 * await s3.stop();
 * ```
 */
export async function startS3Server(buckets: Record<string, Record<string, string>>): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), "tensormap-s3-"));
  const child = spawn(nodeBinary(), [CHILD, dir, JSON.stringify(buckets)], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error(`the S3 server did not start within 120 s: ${stderr}`))), 120_000);
    child.stdout!.on("data", (d) => {
      stdout += d;
      const line = /^(\{.*\})\n/.exec(stdout);
      if (line) (clearTimeout(timer), resolvePort(JSON.parse(line[1]!).port));
    });
    child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`the S3 server exited (${code}): ${stderr}`))));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: async () => (await fetch(`http://127.0.0.1:${port}/__requests`)).json() as Promise<Record<string, number>>,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise<void>((done) => {
          child.once("exit", () => done());
          child.kill("SIGTERM");
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
