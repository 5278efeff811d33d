/**
 * s3:// against a real S3-compatible server that checks SigV4 signatures (@20minutes/s3rver on loopback, run under
 * Node): single files and a sharded folder read byte-identically, settings from the standard variables, and a wrong
 * secret, no credentials or a missing key fail at once with the documented error.
 */
import { readdirSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { open, openCheckpoint } from "../../src/checkpoint/open.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { remoteStatus } from "../../src/io/remote/http-object.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { digests, failure, localDigests } from "../support/remote.ts";
import { S3_CREDENTIALS, startS3Server, type S3Server } from "../support/s3-server.ts";

const BUCKET = "models";
/** A key with characters SigV4 must encode exactly as the server does (space, plus, equals, parentheses). */
const ODD_KEY = "odd dir/x+y=(1).safetensors";
const VARS = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"];
const SMALL = { remote: { probeBytes: 64, partBytes: 1000, concurrency: 4 } };

describe("s3:// against a SigV4-checking S3-compatible server (s3rver on loopback)", () => {
  let s3: S3Server;
  const saved = Object.fromEntries(VARS.map((k) => [k, process.env[k]]));
  /** Sets the standard variables for one test (the rest unset); afterEach puts back what was there. */
  const env = (vars: Record<string, string>) => {
    for (const k of VARS) delete process.env[k];
    Object.assign(process.env, vars);
  };
  const signed = () => ({ AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey, AWS_REGION: "eu-west-1" });

  beforeAll(async () => {
    const objects: Record<string, string> = { [ODD_KEY]: fixture("safetensors/tiny-gpt2.safetensors") };
    for (const dir of ["safetensors", "sharded"]) {
      for (const f of readdirSync(fixture(dir)).filter((f) => /\.(safetensors|json)$/.test(f) && !f.endsWith(".expected.json"))) {
        objects[`${dir}/${f}`] = fixture(dir, f);
      }
    }
    s3 = await startS3Server({ [BUCKET]: objects });
  });
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  afterAll(async () => {
    await s3?.stop();
  });

  test.each(["safetensors/tiny-gpt2.safetensors", "safetensors/all-dtypes.safetensors", ODD_KEY])("s3://models/%s reads byte-identically to the local file", async (key) => {
    env(signed());
    const local = await localDigests(fixture(key === ODD_KEY ? "safetensors/tiny-gpt2.safetensors" : key));
    for (const opts of [{}, SMALL]) {
      using model = await openCheckpoint(`s3://${BUCKET}/${key}`, opts);
      expect(await digests(model)).toEqual(local);
    }
  });

  test("s3://models/sharded/ opens the folder through its index, every shard byte-identical", async () => {
    env(signed());
    const local = await localDigests(fixture("sharded"));
    using model = await openCheckpoint(`s3://${BUCKET}/sharded/`, SMALL);
    expect(model.files).toEqual(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]);
    expect(await digests(model)).toEqual(local);
  });

  test("AWS_ENDPOINT_URL stands in for AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION for AWS_REGION; a session token is signed along", async () => {
    const { AWS_ENDPOINT_URL_S3, AWS_REGION, ...rest } = signed();
    env({ ...rest, AWS_ENDPOINT_URL: AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION: AWS_REGION, AWS_SESSION_TOKEN: "session-token" });
    const local = await localDigests(fixture("sharded"));
    using w = await loadToDevice(`s3://${BUCKET}/sharded/`, { device: "cpu" });
    expect(new Map(w.keys().map((n) => { const t = w.get(n); return [n, t.device === "cpu" && sha256(t.bytes)]; }))).toEqual(local);
  });

  test("a wrong secret: RemoteError at once (one request), HTTP 403 with the URL and the request id, no credentials", async () => {
    env({ ...signed(), AWS_SECRET_ACCESS_KEY: "not-the-secret", AWS_SESSION_TOKEN: "tok3n" });
    const path = `/${BUCKET}/safetensors/tiny-gpt2.safetensors`;
    const before = (await s3.requests())[path] ?? 0;
    const e = await failure(() => open(`s3:/${path}`, { remote: { backoffMs: 1 } }));
    expect((await s3.requests())[path]).toBe(before + 1);
    expect([e.code, remoteStatus(e)]).toEqual(["RemoteError", 403]);
    expect(e.message).toMatch(new RegExp(`^${s3.endpoint}/${BUCKET}/safetensors/tiny-gpt2\\.safetensors: HTTP 403 .*\\(request id [0-9A-F]{16}\\)$`));
    expect(e.message).not.toMatch(/not-the-secret|tok3n|S3RVER|Signature=/);
  });

  test("no credentials: the request goes unsigned and the private bucket refuses it (403)", async () => {
    const { AWS_ENDPOINT_URL_S3 } = signed();
    env({ AWS_ENDPOINT_URL_S3 });
    expect(remoteStatus(await failure(() => open(`s3://${BUCKET}/safetensors/tiny-gpt2.safetensors`)))).toBe(403);
  });

  test("a missing key is RemoteError 404 at once (one request), naming the URL and request id; a prefix with no checkpoint is ENOENT", async () => {
    env(signed());
    const e = await failure(() => open(`s3://${BUCKET}/safetensors/missing.safetensors`, { remote: { backoffMs: 1 } }));
    expect([e.code, remoteStatus(e)]).toEqual(["RemoteError", 404]);
    expect((await s3.requests())[`/${BUCKET}/safetensors/missing.safetensors`]).toBe(1);
    expect(e.message).toMatch(/\/models\/safetensors\/missing\.safetensors: HTTP 404 .*no such object \(request id [0-9A-F]{16}\)$/);
    expect((await failure(() => openCheckpoint(`s3://${BUCKET}/nothing-here/`))).code).toBe("ENOENT");
  });
});
