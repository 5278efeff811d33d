/**
 * The local cache of remote files (`remote: { cache }`, `TENSORMAP_CACHE`) against real nginx, requests counted by
 * the proxy in front of it: a copy serves the next open from disk, and a copy that is stale, cut short, edited or
 * unfinished is never used.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { open, openCheckpoint, type OpenOptions } from "../../src/checkpoint/open.ts";
import { tempName } from "../../src/io/commit.ts";
import { isRemoteUrl } from "../../src/io/remote/url.ts";
import { loadLibc } from "../../src/io/libc.ts";
import { fixture } from "../support/fixtures.ts";
import { digests, failure, localDigests } from "../support/remote.ts";
import { NGINX, startFaultProxy, startNginx, type FaultProxy, type Nginx } from "../support/servers.ts";

/** Small parts and a short first read, so that even the small fixtures take several requests. */
const SMALL: OpenOptions = { remote: { probeBytes: 64, partBytes: 1000, concurrency: 4 } };

describe.skipIf(!NGINX)("the local cache of remote files (nginx on loopback)", () => {
  let nginx: Nginx;
  let proxy: FaultProxy;
  let mapped: boolean;
  const folders: string[] = [];
  beforeAll(async () => {
    nginx = await startNginx();
    proxy = await startFaultProxy(nginx.url);
    mapped = !("unavailable" in (await loadLibc()));
  });
  afterAll(async () => {
    await proxy?.stop();
    await nginx?.stop();
    for (const f of folders) rmSync(f, { recursive: true, force: true });
  });

  const newCache = () => {
    const dir = mkdtempSync(join(tmpdir(), "tensormap-cache-"));
    folders.push(dir);
    return dir;
  };
  /** A scratch copy of a fixture served through the proxy, and how many requests it has had. */
  const served = (name: string, from: string) => {
    copyFileSync(fixture(from), join(nginx.scratch, name));
    const key = `none /scratch/${name}`;
    return { url: `${proxy.url}/none/scratch/${name}`, path: join(nginx.scratch, name), requests: () => proxy.requests.get(key) ?? 0 };
  };
  /** Every file under the cache folder, relative to it. */
  const contents = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
  /** Opens, reads every tensor, closes: the digests, and whether the copy served it (a local file in the cache). */
  const load = async (url: string, cache: string | false | undefined, options = SMALL) => {
    const model = await openCheckpoint(url, { remote: { ...options.remote, cache } });
    try {
      const fromCache = model.backend === (mapped ? "mmap" : "read") && !isRemoteUrl(model.path);
      return { sums: await digests(model), fromCache };
    } finally {
      model.close();
    }
  };

  test("a file fetched whole is copied; the next open maps the copy: one request (the first read), the same bytes", async () => {
    const file = served("a.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    const local = await localDigests(fixture("safetensors/tiny-gpt2.safetensors"));
    expect(await load(file.url, cache)).toEqual({ sums: local, fromCache: false });
    const [copy, sidecar, ...more] = contents(cache);
    expect([basename(copy!), basename(sidecar!), more]).toEqual(["a.safetensors", "a.safetensors.remote.json", []]);
    expect(readFileSync(join(cache, copy!))).toEqual(readFileSync(file.path));
    const side = JSON.parse(readFileSync(join(cache, sidecar!), "utf8"));
    expect(side.url).toBe(`${proxy.url}/none/scratch/a.safetensors`);
    expect([side.version.size, typeof side.version.etag]).toEqual([statSync(file.path).size, "string"]);

    const before = file.requests();
    expect(await load(file.url, cache)).toEqual({ sums: local, fromCache: true });
    expect(file.requests()).toBe(before + 1);
    using again = await open(file.url, { remote: { cache } });
    expect([again.source.zeroCopy, again.path]).toEqual([mapped, join(cache, copy!)]);
  });

  test("an object replaced remotely is fetched anew, with its new bytes, and its copy replaces the old", async () => {
    const file = served("b.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    await load(file.url, cache);
    copyFileSync(fixture("safetensors/all-dtypes.safetensors"), file.path);
    utimesSync(file.path, new Date(), new Date(Date.now() + 5000));
    const before = file.requests();
    const fresh = await localDigests(fixture("safetensors/all-dtypes.safetensors"));
    expect(await load(file.url, cache)).toEqual({ sums: fresh, fromCache: false });
    expect(file.requests()).toBeGreaterThan(before + 1);
    expect(await load(file.url, cache)).toEqual({ sums: fresh, fromCache: true });
    expect(contents(cache).length).toBe(2);
  });

  test("a copy cut short, edited in place (date kept), or beside a broken sidecar is never used; the next fetch replaces it", async () => {
    const file = served("c.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    const local = await localDigests(fixture("safetensors/tiny-gpt2.safetensors"));
    await load(file.url, cache);
    const [copy, sidecar] = contents(cache).map((f) => join(cache, f));
    const damages: Array<[string, () => void]> = [
      ["cut short", () => truncateSync(copy!, statSync(copy!).size - 1)],
      ["its header overwritten, its size, inode and date kept", () => {
        const st = statSync(copy!);
        const fd = openSync(copy!, "r+");
        writeSync(fd, new Uint8Array(8).fill(0xff), 0, 8, 0);
        closeSync(fd);
        utimesSync(copy!, st.atime, st.mtime);
      }],
      ["its sidecar cut short", () => writeFileSync(sidecar!, readFileSync(sidecar!, "utf8").slice(0, 40))],
      ["its sidecar gone", () => rmSync(sidecar!)],
    ];
    for (const [what, damage] of damages) {
      damage();
      expect([what, await load(file.url, cache)]).toEqual([what, { sums: local, fromCache: false }]);
      expect([what, await load(file.url, cache)]).toEqual([what, { sums: local, fromCache: true }]);
    }
  });

  test("a sharded folder: the index and every shard are copied, and the next open takes each from disk", async () => {
    const cache = newCache();
    const local = await localDigests(fixture("sharded"));
    const url = `${proxy.url}/none/fixtures/sharded/`;
    const names = ["model.safetensors.index.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"];
    const requests = () => names.map((n) => proxy.requests.get(`none /fixtures/sharded/${n}`) ?? 0);
    const first = await load(url, cache);
    expect(first.sums).toEqual(local);
    expect(contents(cache).map((f) => basename(f)).sort()).toEqual(names.flatMap((n) => [n, `${n}.remote.json`]).sort());
    const before = requests();
    const model = await openCheckpoint(url, { remote: { ...SMALL.remote, cache } });
    try {
      expect(model.files.map((f) => model.shard(f).path.startsWith(cache))).toEqual([true, true, true]);
      expect(await digests(model)).toEqual(local);
    } finally {
      model.close();
    }
    expect(requests()).toEqual(before.map((n) => n + 1));
  });

  test("nothing unfinished goes in: a partial fetch leaves only its temp, removed at close; a dead writer's temp goes at the next write", async () => {
    const file = served("d.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    const partial = await open(file.url, { remote: { ...SMALL.remote, cache } });
    await partial.prefetch([partial.keys()[0]!]);
    const folder = join(cache, contents(cache)[0]!.split("/")[0]!);
    expect(readdirSync(folder)).toEqual([expect.stringMatching(/^\.d\.safetensors\.tmp-\d+-/)]);
    partial.close();
    expect(readdirSync(folder)).toEqual([]);

    // A writer killed mid-fetch: its temp, named by a process that is gone, on this host.
    const dead = spawnSync(process.execPath, ["--version"]).pid!;
    const host = /-([0-9a-f]{8})-[0-9a-f]{8}$/.exec(tempName("/x/y"))![1];
    const leftover = tempName(join(folder, "d.safetensors"), "tmp", `${dead}-1-${host}-0badf00d`);
    writeFileSync(leftover, "half a file");
    await load(file.url, cache);
    expect(readdirSync(folder).sort()).toEqual(["d.safetensors", "d.safetensors.remote.json"]);
  });

  test("a fetch cut off mid-flight (the file closed) leaves no copy and no temp", async () => {
    const file = served("e.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    const model = await open(file.url, { remote: { ...SMALL.remote, cache } });
    expect(contents(cache)).toEqual([expect.stringMatching(/\/\.e\.safetensors\.tmp-\d+-/)]);
    const pending = model.prefetch();
    model.close();
    expect((await failure(() => pending)).code).toBe("Closed");
    expect(contents(cache)).toEqual([]);
    expect(file.requests()).toBeGreaterThan(0);
  });

  test("a cache folder that cannot be written: the load works without a copy, and TENSORMAP_DEBUG says why", async () => {
    const file = served("f.safetensors", "safetensors/tiny-gpt2.safetensors");
    const notAFolder = join(newCache(), "file");
    writeFileSync(notAFolder, "");
    const said: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s: string | Uint8Array) => (said.push(String(s)), true));
    process.env.TENSORMAP_DEBUG = "1";
    try {
      const local = await localDigests(fixture("safetensors/tiny-gpt2.safetensors"));
      expect(await load(file.url, join(notAFolder, "cache"))).toEqual({ sums: local, fromCache: false });
    } finally {
      delete process.env.TENSORMAP_DEBUG;
      spy.mockRestore();
    }
    expect(said.filter((l) => l.startsWith("tensormap: cache:"))).toEqual([expect.stringMatching(/not writable \(ENOTDIR\); loading without a cache\n$/)]);
  });

  test("TENSORMAP_CACHE is the folder by default; cache: false turns it off", async () => {
    const file = served("g.safetensors", "safetensors/tiny-gpt2.safetensors");
    const cache = newCache();
    process.env.TENSORMAP_CACHE = cache;
    try {
      expect((await load(file.url, undefined)).fromCache).toBe(false);
      expect(contents(cache).length).toBe(2);
      expect((await load(file.url, undefined)).fromCache).toBe(true);
      const before = file.requests();
      expect((await load(file.url, false)).fromCache).toBe(false);
      expect(file.requests()).toBeGreaterThan(before + 1);
    } finally {
      delete process.env.TENSORMAP_CACHE;
    }
  });
});
