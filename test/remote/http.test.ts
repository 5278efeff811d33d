/**
 * Remote checkpoints over HTTP against real nginx on loopback (and a fault-injecting proxy in front of it):
 * every fixture reads byte-identically remote and local, faults end in identical bytes or the documented error.
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { open, openCheckpoint, openSharded, resolveCheckpoint, type OpenOptions } from "../../src/checkpoint/open.ts";
import { fetchSlice } from "../../src/checkpoint/remote.ts";
import type { SliceSpec } from "../../src/checkpoint/slice.ts";
import { loadToDevice } from "../../src/device/load.ts";
import { loadLibc } from "../../src/io/libc.ts";
import type { RemoteProgress } from "../../src/io/remote/options.ts";
import { cli } from "../support/cli.ts";
import { denoBinary } from "../package/artefact.ts";
import { fixture, sha256 } from "../support/fixtures.ts";
import { bigFile } from "./big-file.ts";
import { withEnv } from "../support/env.ts";
import { digests, failure, localDigests } from "../support/remote.ts";
import { NGINX, startFaultProxy, startNginx, type FaultProxy, type Nginx } from "../support/servers.ts";

/** Small parts and a short first read, so that even the small fixtures take several requests. */
const SMALL: OpenOptions = { remote: { probeBytes: 64, partBytes: 1000, concurrency: 4 } };

if (!NGINX) console.warn("test/remote: skipped, nginx is not installed (apt-get install -y nginx-light)");

describe.skipIf(!NGINX)("remote checkpoints over HTTP (nginx on loopback)", () => {
  let nginx: Nginx;
  let proxy: FaultProxy;
  beforeAll(async () => {
    nginx = await startNginx();
    proxy = await startFaultProxy(nginx.url);
  });
  afterAll(async () => {
    await proxy?.stop();
    await nginx?.stop();
  });
  const at = (path: string) => `${nginx.url}/fixtures/${path}`;

  test("a cpu load and tensormap load of a remote file larger than the first read fetch every tensor", async () => {
    const bytes = bigFile(3 << 20);
    writeFileSync(join(nginx.scratch, "cpu-load.safetensors"), bytes);
    const url = `${nginx.url}/scratch/cpu-load.safetensors`;
    using w = await loadToDevice(`${proxy.url}/none/scratch/cpu-load.safetensors`, { device: "cpu" });
    const t = w.get("big");
    expect(t.device === "cpu" && sha256(t.bytes)).toBe(sha256(bytes.subarray(bytes.length - (3 << 20))));
    // Each byte fetched once: the first read (1 MiB) and then the tensor's bytes past it.
    expect(proxy.sent.get("none /scratch/cpu-load.safetensors")).toBe(bytes.length);
    const r = await cli("load", url);
    expect([r.code, r.stdout]).toEqual([0, expect.stringMatching(/^1 tensor/)]);
  });

  const singleFiles = ["safetensors", "torch"].flatMap((dir) =>
    readdirSync(fixture(dir)).filter((f) => /\.(safetensors|pt|bin)$/.test(f)).map((f) => `${dir}/${f}`),
  );

  test.each(singleFiles)("%s reads byte-identically remote and local, tensor by tensor", async (file) => {
    const local = await localDigests(fixture(file));
    for (const opts of [{}, SMALL]) {
      const model = await openCheckpoint(at(file), opts);
      try {
        expect(model.format).toBe(file.startsWith("torch") ? "pytorch" : "safetensors");
        expect(await digests(model)).toEqual(local);
      } finally {
        model.close();
      }
    }
  });

  test("onProgress fires as each part lands, per file: only growing, the event loop turning meanwhile, the last equal to the bytes sent", async () => {
    writeFileSync(join(nginx.scratch, "progress.safetensors"), bigFile(256 << 10));
    const url = `${proxy.url.replace("//", "//me:secret@")}/none/scratch/progress.safetensors?sig=s3cret`;
    const events: Array<RemoteProgress & { ticks: number }> = [];
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    try {
      using file = await open(url, { remote: { probeBytes: 4096, partBytes: 16 << 10, concurrency: 2, onProgress: (p) => events.push({ ...p, ticks }) } });
      await file.prefetch();
    } finally {
      clearInterval(ticker);
    }
    expect(new Set(events.map((e) => e.url))).toEqual(new Set([`${proxy.url}/none/scratch/progress.safetensors?…`]));
    for (const [i, e] of events.entries()) {
      const before = events[i - 1] ?? { bytesDone: 0, bytesTotal: 0 };
      expect([e.bytesDone >= before.bytesDone, e.bytesTotal >= before.bytesTotal, e.bytesDone <= e.bytesTotal]).toEqual([true, true, true]);
    }
    // The first read, then 16 parts of 16 KiB (and one for the last bytes past them).
    expect(events.length).toBeGreaterThanOrEqual(17);
    const last = events.at(-1)!;
    expect([last.bytesDone, last.bytesTotal]).toEqual([proxy.sent.get("none /scratch/progress.safetensors?sig=s3cret"), last.bytesDone]);
    expect(last.ticks).toBeGreaterThan(events[1]!.ticks);

    // Through openCheckpoint: each shard of a folder reports on its own.
    const shards: RemoteProgress[] = [];
    const model = await openCheckpoint(at("sharded/"), { remote: { ...SMALL.remote, onProgress: (p) => shards.push(p) } });
    await model.prefetch();
    model.close();
    const lastOf = new Map(shards.map((p) => [p.url.split("/").at(-1), p]));
    expect([...lastOf.keys()].sort()).toEqual(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"]);
    for (const [name, p] of lastOf) {
      const size = statSync(fixture("sharded", name!)).size;
      expect([name, p.bytesDone === p.bytesTotal, p.bytesDone >= size]).toEqual([name, true, true]);
    }
  });

  test("a sharded folder (trailing /) and its index URL open every shard remotely, byte-identically", async () => {
    const local = await localDigests(fixture("sharded"));
    for (const url of [at("sharded/"), at("sharded/model.safetensors.index.json")]) {
      const model = await openCheckpoint(url, SMALL);
      try {
        expect(model.files).toEqual(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]);
        expect(model.verify()).toBe(local.size);
        expect(await digests(model)).toEqual(local);
      } finally {
        model.close();
      }
    }
  });

  test("a tensor not fetched yet is NotFetched; prefetch(names) fetches those only; slice and read need no prefetch of the rest", async () => {
    using local = await open(fixture("safetensors/tiny-gpt2.safetensors"), { backend: "read" });
    using file = await open(at("safetensors/tiny-gpt2.safetensors"), SMALL);
    const [a, b] = file.keys().filter((n) => file.info(n).byteLength > 200);
    expect((await failure(() => file.tensor(a!))).code).toBe("NotFetched");
    await file.prefetch([a!]);
    expect(sha256(file.tensor(a!).bytes)).toBe(sha256(local.tensor(a!).bytes));
    expect((await failure(() => file.tensor(b!))).code).toBe("NotFetched");
    const rows = [[0, 1], null] as const;
    expect(file.slice(a!, [...rows]).bytes).toEqual(local.slice(a!, [...rows]).bytes);
    const { start, byteLength } = file.entry(b!);
    const into = new Uint8Array(byteLength);
    await file.source.read(start, byteLength, into);
    expect(sha256(into)).toBe(sha256(local.tensor(b!).bytes));
  });

  test("fetchSlice fetches only the slice's runs (runs far apart each on its own, close ones in one read), without a prefetch", async () => {
    const mib = 1 << 20;
    const path = join(nginx.scratch, "slices.safetensors");
    writeFileSync(path, bigFile(6 * 2 * mib, [6, 2 * mib]));
    using local = await open(path, { backend: "read" });
    using file = await open(`${proxy.url}/none/scratch/slices.safetensors`, { remote: { probeBytes: 4096 } });
    const sent = () => proxy.sent.get("none /scratch/slices.safetensors")!;
    const requests = () => proxy.requests.get("none /scratch/slices.safetensors")!;
    const cases: Array<[SliceSpec, number, number]> = [
      // [spec, bytes sent, requests]: six columns' runs 2 MiB apart, one request each; two rows, one run.
      [[null, [1000, 5096]], 6 * 4096, 6],
      [[[2, 4], null], 4 * mib, 1],
      // Two rows' runs 1 KiB apart: one read of the span, the gap dropped; 8 KiB apart (past the default gapBytes, a page): two reads.
      [[[2, 4], [0, 2 * mib - 1024]], 4 * mib - 1024, 1],
      [[[2, 4], [0, 2 * mib - 8192]], 4 * mib - 16384, 2],
      [[3, [0, 2]], 2, 1],
    ];
    expect((await failure(() => file.slice("big", [[0, 1], null]))).code).toBe("NotFetched");
    for (const [spec, bytes, count] of cases) {
      const [before, asked] = [sent(), requests()];
      const part = await fetchSlice(file, "big", spec);
      expect([spec, sent() - before, requests() - asked]).toEqual([spec, bytes, count]);
      expect([part.shape, sha256(part.bytes)]).toEqual([local.slice("big", spec).shape, sha256(local.slice("big", spec).bytes)]);
    }
    expect(await fetchSlice(local, "big", [[1, 2], [5, 9]])).toEqual(local.slice("big", [[1, 2], [5, 9]]));
  });

  test("fetchSlice with a larger gapBytes: runs that far apart are one ranged GET, the gaps fetched and dropped; a bad gapBytes is InvalidArgument", async () => {
    const mib = 1 << 20;
    const path = join(nginx.scratch, "gaps.safetensors");
    writeFileSync(path, bigFile(6 * 2 * mib, [6, 2 * mib]));
    using local = await open(path, { backend: "read" });
    const url = `${proxy.url}/none/scratch/gaps.safetensors`;
    const counts = () => [proxy.sent.get("none /scratch/gaps.safetensors") ?? 0, proxy.requests.get("none /scratch/gaps.safetensors") ?? 0] as const;
    // Six columns' runs of 4 KiB, 2 MiB apart; two rows' runs 8 KiB apart. Parts of 16 MiB: a merged read is one GET.
    const column: SliceSpec = [null, [1000, 5096]];
    const rows: SliceSpec = [[2, 4], [0, 2 * mib - 8192]];
    const cases: Array<[number | undefined, SliceSpec, number, number]> = [
      // [gapBytes, spec, bytes sent, requests]
      [undefined, column, 6 * 4096, 6],
      [undefined, rows, 4 * mib - 16384, 2],
      [3 * mib, column, 5 * 2 * mib + 4096, 1],
      [3 * mib, rows, 4 * mib - 8192, 1],
      [8192, rows, 4 * mib - 8192, 1],
      [8191, rows, 4 * mib - 16384, 2],
    ];
    for (const [gapBytes, spec, bytes, count] of cases) {
      using file = await open(url, { remote: { probeBytes: 4096, partBytes: 16 * mib, gapBytes } });
      const [sent, asked] = counts();
      const part = await fetchSlice(file, "big", spec);
      const [sentAfter, askedAfter] = counts();
      expect([gapBytes, spec, sentAfter - sent, askedAfter - asked]).toEqual([gapBytes, spec, bytes, count]);
      expect([part.shape, sha256(part.bytes)]).toEqual([local.slice("big", spec).shape, sha256(local.slice("big", spec).bytes)]);
    }
    for (const gapBytes of [-1, 1.5, Number.NaN, "4096" as unknown as number]) {
      const e = await failure(() => open(url, { remote: { gapBytes } }));
      expect([gapBytes, e.code, e.message]).toEqual([gapBytes, "InvalidArgument", `remote option gapBytes must be an integer ≥ 0, got ${gapBytes}`]);
    }
  });

  test("fetchSlice of a sharded remote checkpoint and of a column slice with runs close together equals the local slice", async () => {
    const local = await openCheckpoint(fixture("sharded"), { backend: "read" });
    const model = await openCheckpoint(at("sharded/"), SMALL);
    try {
      for (const name of model.keys().filter((n) => model.info(n).shape.length === 2)) {
        const [rows, cols] = model.info(name).shape as [number, number];
        for (const spec of [[[1, rows], null], [null, [1, Math.max(1, cols - 1)]], [rows - 1, [0, 1]]] as SliceSpec[]) {
          const part = await fetchSlice(model, name, spec);
          expect([name, spec, part.shape, sha256(part.bytes)]).toEqual([name, spec, local.slice(name, spec).shape, sha256(local.slice(name, spec).bytes)]);
        }
      }
    } finally {
      model.close();
      local.close();
    }
  });

  test("read() into a raw address: through a view of it where there is FFI, FfiUnavailable on Node", async () => {
    using local = await open(fixture("safetensors/tiny-gpt2.safetensors"), { backend: "read" });
    using file = await open(at("safetensors/tiny-gpt2.safetensors"), SMALL);
    const name = file.keys().find((n) => file.info(n).byteLength > 1000)!;
    const { start, byteLength } = file.entry(name);
    const libc = await loadLibc();
    if ("unavailable" in libc) {
      expect((await failure(() => file.source.read(start, byteLength, 1n << 40n))).code).toBe("FfiUnavailable");
      return;
    }
    const into = new Uint8Array(byteLength);
    await file.source.read(start, byteLength, libc.address(into));
    expect(sha256(into)).toBe(sha256(local.tensor(name).bytes));
  });

  test("opening reads only the header: one request when it fits the first read, a second when it does not", async () => {
    const url = `${proxy.url}/none/fixtures/safetensors/tiny-gpt2.safetensors`;
    const key = "none /fixtures/safetensors/tiny-gpt2.safetensors";
    (await open(url, { remote: { probeBytes: 8 << 10 } })).close();
    expect(proxy.requests.get(key)).toBe(1);
    (await open(url, { remote: { probeBytes: 64 } })).close();
    expect(proxy.requests.get(key)).toBe(3);
    expect(proxy.sent.get(key)).toBeLessThan(statSync(fixture("safetensors/tiny-gpt2.safetensors")).size);
  });

  test("headers ending just before, at and just past the first read: one request, one, then two", async () => {
    const counts: number[] = [];
    for (const headerEnd of [999, 1000, 1001]) {
      const name = `header-${headerEnd}.safetensors`;
      const bytes = withHeaderEnd(headerEnd);
      writeFileSync(join(nginx.scratch, name), bytes);
      using file = await open(`${proxy.url}/none/scratch/${name}`, { remote: { probeBytes: 1000 } });
      await file.prefetch();
      expect(Array.from(file.tensor("x").bytes)).toEqual([1, 2, 3, 4]);
      counts.push(proxy.requests.get(`none /scratch/${name}`)!);
    }
    // Prefetching the 4 data bytes is one more request each time (the first read ends inside or before them).
    expect(counts).toEqual([2, 2, 3]);
  });

  test("parts in flight stay under concurrency and under maxInFlightBytes, never below one part", async () => {
    const url = `${proxy.url}/none/fixtures/sharded/`;
    for (const [remote, most] of [[{ partBytes: 500, concurrency: 3 }, 3], [{ partBytes: 500, concurrency: 8, maxInFlightBytes: 1 }, 1]] as const) {
      const model = await openCheckpoint(url, { remote: { ...remote, probeBytes: 64 } });
      proxy.resetPeak();
      await model.prefetch();
      model.close();
      expect(proxy.peak).toBeLessThanOrEqual(most);
      expect(proxy.peak).toBeGreaterThanOrEqual(1);
    }
  });

  test("bad length prefixes fail remotely with the same codes as locally (empty, short, over 100 MB, past the end)", async () => {
    const cases: Array<[string, Uint8Array]> = [
      ["empty", new Uint8Array(0)],
      ["short", new Uint8Array(5)],
      ["too-large", prefixed(100_000_001n, 64)],
      ["at-limit-past-end", prefixed(100_000_000n, 64)],
      ["past-end", prefixed(1000n, 200)],
    ];
    for (const [name, bytes] of cases) {
      const path = join(nginx.scratch, `${name}.safetensors`);
      writeFileSync(path, bytes);
      const local = (await failure(() => open(path, { backend: "read" }))).code;
      expect([name, (await failure(() => open(`${nginx.url}/scratch/${name}.safetensors`))).code]).toEqual([name, local]);
    }
  });

  test("malicious pickles are refused remotely as locally", async () => {
    for (const f of readdirSync(fixture("malicious"))) {
      const local = (await failure(() => open(fixture("malicious", f), { backend: "read" }))).code;
      expect((await failure(() => open(at(`malicious/${f}`)))).code).toBe(local);
    }
  });

  test("an object replaced mid-load fails with FileChanged (If-Match answered 412)", async () => {
    const path = join(nginx.scratch, "replaced.safetensors");
    copyFileSync(fixture("safetensors/tiny-gpt2.safetensors"), path);
    using file = await open(`${nginx.url}/scratch/replaced.safetensors`, SMALL);
    // The same size, one byte different, a new modification time: only the version (ETag) tells.
    const changed = readFileSync(path);
    changed[changed.length - 1]! ^= 1;
    writeFileSync(path, changed);
    utimesSync(path, new Date(), new Date(Date.now() + 5000));
    expect((await failure(() => file.prefetch())).code).toBe("FileChanged");
  });

  test.each(["reset", "503", "norange", "slow"])("fault %s: the load ends in identical bytes", async (fault) => {
    const local = await localDigests(fixture("safetensors/tiny-gpt2.safetensors"));
    const model = await openCheckpoint(`${proxy.url}/${fault}/fixtures/safetensors/tiny-gpt2.safetensors`, {
      remote: { ...SMALL.remote, timeoutMs: 500, backoffMs: 10 },
    });
    try {
      expect(await digests(model)).toEqual(local);
    } finally {
      model.close();
    }
    expect(proxy.requests.get(`${fault} /fixtures/safetensors/tiny-gpt2.safetensors`)).toBeGreaterThan(1);
  });

  test("a server that stays down: RemoteError after the retries allowed, or once the part deadline is near", async () => {
    const url = `${proxy.url}/down/fixtures/safetensors/tiny-gpt2.safetensors`;
    const e = await failure(() => open(url, { remote: { retries: 3, backoffMs: 1 } }));
    expect(e.code).toBe("RemoteError");
    expect(e.message).toMatch(/not fetched after 4 tries in .*: HTTP 503$/);
    expect(proxy.requests.get("down /fixtures/safetensors/tiny-gpt2.safetensors")).toBe(4);
    const late = await failure(() => open(url, { remote: { retries: 1000, backoffMs: 1000, partDeadlineMs: 100 } }));
    expect([late.code, late.message.includes("not fetched after")]).toEqual(["RemoteError", true]);
  });

  test("a host that does not exist, and Deno without --allow-net, fail at the first try: no retry can mend them", async () => {
    const e = await failure(() => open("http://no-such-host.invalid/m.safetensors", { remote: { retries: 3, backoffMs: 60_000 } }));
    expect([e.code, e.message]).toEqual(["RemoteError", expect.stringMatching(/^http:\/\/no-such-host\.invalid\/m\.safetensors: .*(ENOTFOUND|Name or service not known)/)]);
    expect(e.message).not.toContain("not fetched after");
    // The checkout's Deno, whatever runs the suite: only --allow-read, so its fetch is refused for want of --allow-net.
    const script = join(mkdtempSync(join(tmpdir(), "tensormap-net-")), "open.ts");
    writeFileSync(
      script,
      `import { open } from ${JSON.stringify(new URL("../../src/checkpoint/open.ts", import.meta.url).href)};
      try { await open(${JSON.stringify(`${nginx.url}/fixtures/safetensors/tiny-gpt2.safetensors`)}, { remote: { retries: 3, backoffMs: 60000 } }); }
      catch (e) { console.log(JSON.stringify([e.code, e.message])); }`,
    );
    const r = spawnSync(denoBinary(), ["run", "--allow-read", "--no-prompt", script], { encoding: "utf8", timeout: 60_000 });
    const [code, message] = JSON.parse(r.stdout.trim());
    expect([code, message.includes("--allow-net"), message.includes("not fetched after")]).toEqual(["RemoteError", true, false]);
  });

  test("Retry-After is honoured: a wait past the part deadline gives up at once rather than retrying sooner", async () => {
    const url = `${proxy.url}/503/fixtures/safetensors/all-dtypes.safetensors`;
    const e = await failure(() => open(url, { remote: { backoffMs: 1, partDeadlineMs: 950 } }));
    expect([e.code, /not fetched after 1 try in .*: HTTP 503$/.test(e.message)]).toEqual(["RemoteError", true]);
  });

  test("a trickle of bytes (a byte every 50 ms, never idle long) fails at the part deadline instead of holding on", async () => {
    const url = `${proxy.url}/trickle/fixtures/safetensors/all-dtypes.safetensors`;
    const e = await failure(() => open(url, { remote: { timeoutMs: 10_000, partDeadlineMs: 300 } }));
    expect([e.code, e.message.includes("still not complete at the part deadline (300 ms)")]).toEqual(["RemoteError", true]);
  });

  test("a server ignoring Range gets one request per range fetched, not one per part", async () => {
    const url = `${proxy.url}/norange/fixtures/safetensors/all-dtypes.safetensors`;
    using file = await open(url, SMALL);
    await file.prefetch();
    // The first read, the rest of the header, then every tensor in one go.
    expect(proxy.requests.get("norange /fixtures/safetensors/all-dtypes.safetensors")).toBe(3);
  });

  test("a server ignoring Range: its whole-object answer is cancelled after the bytes asked for", async () => {
    const path = join(nginx.scratch, "big.safetensors");
    writeFileSync(path, bigFile(64 << 20));
    using file = await open(`${proxy.url}/norange/scratch/big.safetensors`, { remote: { probeBytes: 4096 } });
    expect(file.keys()).toEqual(["big"]);
    expect(proxy.sent.get("norange /scratch/big.safetensors")).toBeLessThan(32 << 20);
  });

  test("the CLI's inspect and verify take a URL", async () => {
    const url = at("sharded/");
    const inspect = await cli("inspect", url);
    expect([inspect.code, inspect.stderr]).toEqual([0, ""]);
    expect(inspect.stdout).toContain("model-00002-of-00003.safetensors");
    const verify = await cli("verify", url);
    expect([verify.code, verify.stdout.trim()]).toEqual([0, `${url}: ok (17 tensors)`]);
    const missing = await cli("verify", at("sharded/nothing.safetensors"));
    expect(missing.code).not.toBe(0);
    expect(missing.stdout).toMatch(/RemoteError: .*HTTP 404 Not Found: no such object \(request id [0-9a-f]{32}\)\n$/);
  });

  test("a redirect to another origin is followed without the credentials (that origin refuses a request with them)", async () => {
    const local = await localDigests(fixture("sharded"));
    const withCredentials = nginx.url.replace("//", "//me:secret@");
    for (const opts of [{}, { remote: { headers: { authorization: "Bearer t0ken" } } }]) {
      const model = await openCheckpoint(`${withCredentials}/moved/fixtures/sharded/`, { remote: { ...opts.remote, probeBytes: 64 } });
      try {
        expect(await digests(model)).toEqual(local);
      } finally {
        model.close();
      }
    }
    // The guard is live: the same request straight to that origin, credentials and all, is refused.
    const direct = await failure(() => openCheckpoint(`${withCredentials.replace("127.0.0.1", "localhost")}/cdn/fixtures/sharded/`));
    expect([direct.code, direct.message.includes("HTTP 400")]).toEqual(["RemoteError", true]);
  });

  test("hf:// addresses: the index at main, every shard at the commit it named, the token to the hub and not to its CDN", async () => {
    const local = await localDigests(fixture("sharded"));
    await withEnv({ HF_ENDPOINT: nginx.url, HF_TOKEN: "hf_test" }, async () => {
      for (const address of ["hf://o/r", "hf://o/r/", "hf://o/r@main/model.safetensors.index.json"]) {
        const model = await openCheckpoint(address, SMALL);
        try {
          expect([address, await digests(model)]).toEqual([address, local]);
        } finally {
          model.close();
        }
      }
      using shard = await open("hf://o/r@0123abcd0123abcd/model-00002-of-00003.safetensors");
      expect(shard.keys().length).toBeGreaterThan(0);
      process.env.HF_TOKEN = "hf_wrong";
      expect((await failure(() => openCheckpoint("hf://o/r"))).message).toContain("HTTP 401");
    });
  });

  test("nothing listening: the connection refused is retried, then RemoteError naming the cause", async () => {
    const closed = await startFaultProxy(nginx.url);
    const url = `${closed.url}/none/fixtures/safetensors/tiny-gpt2.safetensors?sig=s3cret`;
    await closed.stop();
    const e = await failure(() => open(url, { remote: { retries: 2, backoffMs: 1 } }));
    expect([e.code, /not fetched after 3 tries in .*(ECONNREFUSED|connection refused)/i.test(e.message)]).toEqual(["RemoteError", true]);
    expect(e.message).not.toContain("s3cret");
  });

  test("s3:// addresses: path-style at AWS_ENDPOINT_URL_S3, every request SigV4-signed with the standard variables", async () => {
    const local = await localDigests(fixture("sharded"));
    const vars = { AWS_ENDPOINT_URL_S3: nginx.url, AWS_ACCESS_KEY_ID: "AKIDTEST", AWS_SECRET_ACCESS_KEY: "secret", AWS_SESSION_TOKEN: "tok", AWS_REGION: "eu-west-1" };
    await withEnv(vars, async () => {
      const model = await openCheckpoint("s3://s3b/sharded/", SMALL);
      try {
        expect(await digests(model)).toEqual(local);
      } finally {
        model.close();
      }
      delete process.env.AWS_SECRET_ACCESS_KEY;
      expect((await failure(() => openCheckpoint("s3://s3b/sharded/"))).message).toContain("HTTP 403");
    });
  });

  test("open() of a sharded URL, and resolveCheckpoint or openSharded of any URL, are InvalidArgument naming what to use", async () => {
    const e = await failure(() => open(at("sharded/")));
    expect([e.code, e.message.includes("open it with openCheckpoint")]).toEqual(["InvalidArgument", true]);
    expect((await failure(() => resolveCheckpoint(at("sharded/")))).code).toBe("InvalidArgument");
    expect((await failure(() => openSharded(at("sharded/model.safetensors.index.json")))).code).toBe("InvalidArgument");
  });

  test("403 fails at once, naming the status, the URL without credentials and the request id", async () => {
    const e = await failure(() => openCheckpoint(`${proxy.url.replace("//", "//me:secret@")}/403/fixtures/sharded/?token=abc`));
    expect(e.code).toBe("RemoteError");
    expect(e.message).toContain("HTTP 403");
    expect(e.message).toContain("REQ403");
    expect(e.message).toContain(`${proxy.url}/403/fixtures/sharded/model.safetensors.index.json`);
    expect(e.message).not.toMatch(/secret|abc/);
    expect(e.message).not.toContain("\n");
    expect(proxy.requests.get("403 /fixtures/sharded/model.safetensors.index.json")).toBe(1);
  });

  test("404: RemoteError with nginx's request id; a folder without a checkpoint is ENOENT; a missing shard is MissingShard", async () => {
    const e = await failure(() => open(at("safetensors/missing.safetensors")));
    expect([e.code, /HTTP 404.*request id [0-9a-f]{32}/.test(e.message)]).toEqual(["RemoteError", true]);
    expect((await failure(() => openCheckpoint(at("safetensors/")))).code).toBe("ENOENT");
    writeFileSync(join(nginx.scratch, "model.safetensors.index.json"), JSON.stringify({ weight_map: { a: "model-00001-of-00001.safetensors" } }));
    expect((await failure(() => openCheckpoint(`${nginx.url}/scratch/`))).code).toBe("MissingShard");
  });
});

/** A safetensors file of one U8 tensor `x` = [1, 2, 3, 4] whose header (with its 8-byte length) ends at `end`. */
function withHeaderEnd(end: number): Uint8Array {
  const json = JSON.stringify({ x: { dtype: "U8", shape: [4], data_offsets: [0, 4] } });
  const header = new TextEncoder().encode(json.padEnd(end - 8));
  const out = new Uint8Array(end + 4);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set([1, 2, 3, 4], end);
  return out;
}

/** A file whose first 8 bytes say `n`, `total` bytes long. */
function prefixed(n: bigint, total: number): Uint8Array {
  const out = new Uint8Array(total);
  new DataView(out.buffer).setBigUint64(0, n, true);
  return out;
}
