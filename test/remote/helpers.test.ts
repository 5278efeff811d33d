/** The pure parts of the remote sources: URLs and what may be shown of them, Hub addresses, retry rules, options. */
import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { HeldRanges } from "../../src/io/remote/held-ranges.ts";
import { hubHttpUrl, pinRevision } from "../../src/io/remote/hub.ts";
import { partsInFlight, resolveRemoteOptions } from "../../src/io/remote/options.ts";
import { backoffMs, retryableStatus, retryAfterMs } from "../../src/io/remote/retry.ts";
import { isRemoteUrl, parseRemoteUrl, siblingUrl } from "../../src/io/remote/url.ts";

test("credentials leave the URL for an Authorization header; what is shown has neither them nor the query", () => {
  const u = parseRemoteUrl("https://me:s%40cret@example.com/m/model.safetensors?X-Amz-Signature=abc");
  expect(u.href).toBe("https://example.com/m/model.safetensors?X-Amz-Signature=abc");
  expect(u.shown).toBe("https://example.com/m/model.safetensors?…");
  expect(u.authorization).toBe(`Basic ${btoa("me:s@cret")}`);
  expect(parseRemoteUrl("http://example.com/a").authorization).toBeUndefined();
});

test("only http and https are remote; a bad URL is InvalidArgument without its credentials", () => {
  expect([isRemoteUrl("HTTPS://x/y"), isRemoteUrl("http://x"), isRemoteUrl("s3://b/k"), isRemoteUrl("./http://x")]).toEqual([true, true, false, false]);
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
