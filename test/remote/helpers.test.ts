/** The pure parts of the remote sources: URLs and what may be shown of them, Hub addresses, retry rules, options. */
import { expect, test } from "vitest";
import { planSlice, sliceReads } from "../../src/checkpoint/slice.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { cacheable, sameVersion } from "../../src/io/remote/cache.ts";
import { HeldRanges } from "../../src/io/remote/held-ranges.ts";
import { hubHttpUrl, pinRevision } from "../../src/io/remote/hub.ts";
import { evenPartBytes, partsInFlight, resolveRemoteOptions } from "../../src/io/remote/options.ts";
import { backoffMs, retryableStatus, retryAfterMs } from "../../src/io/remote/retry.ts";
import { s3HttpUrl, s3Signer } from "../../src/io/remote/s3.ts";
import { EMPTY_SHA256, signV4 } from "../../src/io/remote/sigv4.ts";
import { isRemoteUrl, parseRemoteUrl, siblingUrl } from "../../src/io/remote/url.ts";

test("credentials leave the URL for an Authorization header; what is shown has neither them nor the query", () => {
  const u = parseRemoteUrl("https://me:s%40cret@example.com/m/model.safetensors?X-Amz-Signature=abc");
  expect(u.href).toBe("https://example.com/m/model.safetensors?X-Amz-Signature=abc");
  expect(u.shown).toBe("https://example.com/m/model.safetensors?…");
  expect(u.authorization).toBe(`Basic ${btoa("me:s@cret")}`);
  expect(parseRemoteUrl("http://example.com/a").authorization).toBeUndefined();
});

test("http, https, s3 and hf are remote, nothing else; a bad URL is InvalidArgument without its credentials", () => {
  const remote = ["HTTPS://x/y", "http://x", "s3://b/k", "hf://o/r", "./http://x", "file:///m", "gs://b/k", "checkpoints/gpt2"].map(isRemoteUrl);
  expect(remote).toEqual([true, true, true, true, false, false, false, false]);
  try {
    parseRemoteUrl("http://me:secret@[bad/x");
    expect.unreachable();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as SafetensorsError).code).toBe("InvalidArgument");
    expect((e as Error).message).not.toContain("secret");
  }
});

test("a shard's URL sits beside its index (or under a folder URL), credentials kept, query not, names escaped", () => {
  expect(siblingUrl("https://u:p@h/m/model.safetensors.index.json?t=1", "model-00001-of-00002.safetensors")).toBe("https://u:p@h/m/model-00001-of-00002.safetensors");
  expect(siblingUrl("http://h/m/", "a b#c.safetensors")).toBe("http://h/m/a%20b%23c.safetensors");
});

test("408, 429 and 5xx are retried; other 4xx are not; Retry-After in seconds or as a date; backoff stays under its bound", () => {
  expect([408, 429, 500, 503, 400, 401, 403, 404, 412].map(retryableStatus)).toEqual([true, true, true, true, false, false, false, false, false]);
  expect(retryAfterMs("3")).toBe(3000);
  expect(retryAfterMs(new Date(10_000).toUTCString(), 8_000)).toBe(2000);
  expect([retryAfterMs(null), retryAfterMs("soon")]).toEqual([undefined, undefined]);
  for (let i = 0; i < 100; i++) expect(backoffMs(20, 100, 5000)).toBeLessThan(5000);
});

test("part sizes fill every round of parts in flight where parts of at least half the size allow it", () => {
  const mib = 1 << 20;
  expect(evenPartBytes(116 * 8 * mib, 8 * mib, 16)).toBe(7.25 * mib); // 128 parts, 8 full rounds, not 116
  expect(evenPartBytes(128 * 8 * mib, 8 * mib, 16)).toBe(8 * mib); // already full rounds
  expect(evenPartBytes(3 * mib, 8 * mib, 16)).toBe(8 * mib); // one part: 16 would be under half the size
  expect(evenPartBytes(9 * 8 * mib, 8 * mib, 16)).toBe(4.5 * mib); // 9 parts → 16
  expect(evenPartBytes(8 * 8 * mib, 8 * mib, 16)).toBe(4 * mib); // 8 parts → 16 of half the size
});

test("options: defaults, refusals, and a cap on bytes in flight never below one part", () => {
  const d = resolveRemoteOptions();
  expect([d.partBytes, d.concurrency, d.probeBytes, partsInFlight(d)]).toEqual([8 << 20, 16, 1 << 20, 16]);
  expect(partsInFlight(resolveRemoteOptions({ maxInFlightBytes: 20 << 20 }))).toBe(2);
  expect(partsInFlight(resolveRemoteOptions({ maxInFlightBytes: 1 }))).toBe(1);
  for (const bad of [{ partBytes: 0 }, { concurrency: 1.5 }, { timeoutMs: -1 }, { retries: Number.NaN }]) {
    expect(() => resolveRemoteOptions(bad)).toThrow(SafetensorsError);
  }
});

test("held ranges: a view from the one range holding all of it, overlaps allowed, none across two ranges", () => {
  const held = new HeldRanges();
  held.add(100, new Uint8Array([1, 2, 3, 4]));
  held.add(0, Uint8Array.from({ length: 50 }, (_, i) => i));
  held.add(10, new Uint8Array(5).fill(9));
  expect(Array.from(held.find(102, 2)!)).toEqual([3, 4]);
  expect(Array.from(held.find(16, 3)!)).toEqual([16, 17, 18]);
  expect([held.find(48, 4), held.find(103, 2), held.find(60, 1)]).toEqual([undefined, undefined, undefined]);
  held.add(50, new Uint8Array([50, 51]));
  held.add(52, new Uint8Array([52, 53, 54]));
  expect(Array.from(held.find(47, 7)!)).toEqual([47, 48, 49, 50, 51, 52, 53]);
  expect(held.find(47, 9)).toBeUndefined();
  // Held now: [0, 55) (overlapping ranges) and [100, 104). A prefetch fetches only the rest.
  expect(held.missing(0, 200)).toEqual([[55, 45], [104, 96]]);
  expect(held.missing(20, 30)).toEqual([]);
  expect(held.missing(54, 3)).toEqual([[55, 2]]);
  expect(held.missing(101, 10)).toEqual([[104, 7]]);
  expect(held.missing(60, 5)).toEqual([[60, 5]]);
});

test("hf:// addresses: repository, revision (main by default), path, repo type; pinning swaps in the commit only", () => {
  const at = (a: string) => hubHttpUrl(a, "https://hub.example/");
  expect(at("hf://o/r")).toBe("https://hub.example/o/r/resolve/main/");
  expect(at("hf://o/r@v1.0/sub dir/model.safetensors")).toBe("https://hub.example/o/r/resolve/v1.0/sub%20dir/model.safetensors");
  expect(at("hf://o/r@refs%2Fpr%2F1/")).toBe("https://hub.example/o/r/resolve/refs%2Fpr%2F1/");
  expect(at("hf://datasets/o/r/x.safetensors")).toBe("https://hub.example/datasets/o/r/resolve/main/x.safetensors");
  for (const bad of ["hf://", "hf://o", "hf://o/r@", "hf://o/r@a@b/x"]) expect(() => at(bad)).toThrow(SafetensorsError);
  const main = "https://hub.example/o/r/resolve/main/model-00001-of-00002.safetensors";
  expect(pinRevision(main, "0123abcd")).toBe("https://hub.example/o/r/resolve/0123abcd/model-00001-of-00002.safetensors");
  expect([pinRevision(main, undefined), pinRevision(main, "not a commit")]).toEqual([main, main]);
});

test("SigV4: AWS's own GET Object example signs to the signature its documentation gives", async () => {
  const credentials = { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };
  const extra = await signV4("https://examplebucket.s3.amazonaws.com/test.txt", { range: "bytes=0-9" }, credentials, "us-east-1", "s3", new Date("2013-05-24T00:00:00Z"));
  expect(extra.authorization).toBe(
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  );
  expect([extra["x-amz-date"], extra["x-amz-content-sha256"]]).toEqual(["20130524T000000Z", EMPTY_SHA256]);
});

test("s3:// addresses: virtual-hosted at AWS, path-style for a dotted bucket and at a custom endpoint", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  expect(s3HttpUrl("s3://models/gpt2/model.safetensors", env({ AWS_REGION: "eu-west-1" }))).toBe("https://models.s3.eu-west-1.amazonaws.com/gpt2/model.safetensors");
  expect(s3HttpUrl("s3://my.models/a b/", env({ AWS_DEFAULT_REGION: "us-west-2" }))).toBe("https://s3.us-west-2.amazonaws.com/my.models/a%20b/");
  expect(s3HttpUrl("s3://models/x", env({ AWS_ENDPOINT_URL: "http://127.0.0.1:9000/" }))).toBe("http://127.0.0.1:9000/models/x");
  expect(s3HttpUrl("s3://models/x", env({ AWS_ENDPOINT_URL: "http://other", AWS_ENDPOINT_URL_S3: "http://s3only" }))).toBe("http://s3only/models/x");
  expect(s3HttpUrl("s3://models", env({}))).toBe("https://models.s3.us-east-1.amazonaws.com/");
  for (const bad of ["s3://", "s3://Bad_Bucket/x"]) expect(() => s3HttpUrl(bad, env({}))).toThrow(SafetensorsError);
  expect(s3Signer(env({ AWS_ACCESS_KEY_ID: "a" }))).toBeUndefined();
});

test("cache versions: the same size, ETag and VersionId; the date only where neither is given; none of them, not cacheable", () => {
  const v = { size: 10, etag: '"a"', lastModified: "Mon, 01 Jan 2026 00:00:00 GMT" };
  expect(sameVersion(v, { ...v, lastModified: "Tue, 02 Jan 2026 00:00:00 GMT", commit: "0123abcd" })).toBe(true);
  expect([sameVersion(v, { ...v, size: 11 }), sameVersion(v, { ...v, etag: '"b"' }), sameVersion(v, { ...v, versionId: "v2" })]).toEqual([false, false, false]);
  const dated = { size: 10, lastModified: v.lastModified };
  expect([sameVersion(dated, { ...dated }), sameVersion(dated, { ...dated, lastModified: "Tue, 02 Jan 2026 00:00:00 GMT" })]).toEqual([true, false]);
  expect([cacheable({ size: 10 }), cacheable(dated), cacheable({ size: 1, versionId: "v1" })]).toEqual([false, true, true]);
});

test("slice reads: runs at most maxGap apart share a read, each run placed where it goes in the output", () => {
  const plan = planSlice("w", [4, 6], 32, [null, [1, 3]]); // runs of 8 bytes at 4, 28, 52, 76: 16 bytes apart
  expect(sliceReads(plan, 16)).toEqual([{ offset: 4, length: 80, pieces: [[0, 0, 8], [24, 8, 8], [48, 16, 8], [72, 24, 8]] }]);
  expect(sliceReads(plan, 15).map((r) => [r.offset, r.length, r.pieces])).toEqual([4, 28, 52, 76].map((o, i) => [o, 8, [[0, 8 * i, 8]]]));
  expect(sliceReads(planSlice("w", [4, 6], 32, [[0, 0], null]), 16)).toEqual([]);
});
