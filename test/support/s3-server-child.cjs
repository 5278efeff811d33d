// An S3-compatible server (@20minutes/s3rver, which checks SigV4 signatures) on a free loopback port, run under Node
// whatever runtime the tests use. Plain CommonJS, so that Node 20 runs it as it is.
// argv: DIR SEED_JSON, SEED_JSON = {"BUCKET": {"KEY": "/local/file", …}, …}. Prints {"port": N} once listening.
"use strict";
const { createReadStream, statSync } = require("node:fs");
const { randomBytes } = require("node:crypto");
const S3rver = require("@20minutes/s3rver");
const S3Object = require("@20minutes/s3rver/lib/models/object");

async function main() {
  const [directory, seedJson] = process.argv.slice(2);
  const server = new S3rver({ address: "127.0.0.1", port: 0, directory, silent: true });
  // What S3 does that s3rver does not: a request id on every answer, and no anonymous access (a private bucket),
  // so that an unsigned request is refused as a wrongly signed one is. `GET /__requests` answers the count of
  // requests by path so far (the tests' view of retries).
  const requests = {};
  server.middleware.unshift(async (ctx, next) => {
    if (ctx.path === "/__requests") {
      ctx.body = JSON.stringify(requests);
      return;
    }
    requests[ctx.path] = (requests[ctx.path] || 0) + 1;
    ctx.set("x-amz-request-id", randomBytes(8).toString("hex").toUpperCase());
    if (!ctx.get("authorization") && !("X-Amz-Algorithm" in ctx.query)) {
      ctx.status = 403;
      ctx.type = "application/xml";
      ctx.body = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
      return;
    }
    await next();
  });
  for (const [bucket, objects] of Object.entries(JSON.parse(seedJson))) {
    await server.store.putBucket(bucket);
    for (const [key, file] of Object.entries(objects)) {
      const metadata = { "content-type": "application/octet-stream", "content-length": String(statSync(file).size) };
      await server.store.putObject(new S3Object(bucket, key, createReadStream(file), metadata));
    }
  }
  const { port } = await server.run();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
