import { closeSync, copyFileSync, fsyncSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import { touchAll } from "../../src/cli/load.ts";
import { describePageCache, pageCacheJson } from "../../src/cli/page-cache.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { POSIX_FADV_DONTNEED } from "../../ffi/types.ts";
import { ffiUnavailable, hasFfi } from "../../ffi/runtime.ts";
import { loadLibc } from "../../src/io/libc.ts";
import { save } from "../../src/format/writer.ts";
import { cli } from "../support/cli.ts";
import { onTerminal } from "./terminal.ts";
import { fixture } from "../support/fixtures.ts";

const quiet = { write: () => {} };
/** The backend a default open must choose here: mmap wherever there is FFI. */
const BACKEND = hasFfi() ? "mmap" : "read";
/** Whatever the fixture's pages were (another test may just have read them, or none yet): each says so. */
const ANY_STATE = "warm: pages were in memory|cold: pages were read from disk|partly warm: <?\\d+% of pages were in memory";
/** With FFI the state is found out; without, it is said to be unknown. */
const STATE = hasFfi() ? `(?:${ANY_STATE})` : "page cache state unknown";

let dir: string;
beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), "tensormap-cli-load-"))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("load reads every tensor of a sharded checkpoint and reports the totals", async () => {
  const r = await cli("load", fixture("sharded"));
  expect(r.code).toBe(0);
  const m = new RegExp(`^17 tensors, 20\\.7 kB in (\\d+\\.\\d+) (m?)s: (\\d+(?:\\.\\d+)? [kMGT]?B/s|-) \\(${STATE}\\) \\(backend ${BACKEND}, open (\\d+\\.\\d+) (m?)s\\)\n$`).exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  // The total counts the open.
  const ms = (n: string, unit: string) => Number(n) * (unit === "m" ? 1 : 1000);
  expect(ms(m![1]!, m![2]!)).toBeGreaterThanOrEqual(ms(m![4]!, m![5]!));
  // Piped stderr gets no bar: the result is said once, on stdout.
  expect(r.stderr).toBe("");
});

test("the sharded fixture and the single file it was split from read the same bytes", async () => {
  const single = await openCheckpoint(fixture("safetensors/tiny-gpt2.safetensors"));
  const sharded = await openCheckpoint(fixture("sharded"));
  const a = touchAll(single, quiet);
  const b = touchAll(sharded, quiet);
  expect([a.tensors, a.bytes]).toEqual([17, 20736]);
  expect([b.tensors, b.bytes, b.checksum]).toEqual([a.tensors, a.bytes, a.checksum]);
  expect(a.checksum).toBeGreaterThan(0);
  single.close();
  sharded.close();
});

test("--backend read is honoured; an unknown backend is a usage error", async () => {
  const r = await cli("load", fixture("safetensors/tiny-gpt2.safetensors"), "--backend", "read");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/\(backend read, open .+\)\n$/);
  const bad = await cli("load", fixture("safetensors/tiny-gpt2.safetensors"), "--backend", "gpu");
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/^error: --backend wants one of auto, mmap, read, got 'gpu'\n/);
});

// These machines have libcudart but no GPU (cudaGetDeviceCount returns cudaErrorInsufficientDriver); Node has no FFI.
test("--device auto falls back to cpu and says why", async () => {
  const r = await cli("load", fixture("sharded"), "--device", "auto");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(new RegExp(`^17 tensors, 20\\.7 kB in .* \\(${STATE}\\) \\(device cpu\\)\nauto chose cpu: no usable GPU \\(.+\\)\n$`));
});

test("--device cuda without a usable GPU is one clear line and exit 1", async () => {
  const r = await cli("load", fixture("sharded"), "--device", "cuda:0");
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
  expect(r.stderr).toMatch(/^error: CudaUnavailable: cuda:0 is not usable: .+\n$/);
});

test("an unknown --device, --backend with a device load, or --host-register without CUDA, is a usage error", async () => {
  expect((await cli("load", fixture("sharded"), "--device", "gpu")).code).toBe(2);
  expect((await cli("load", fixture("sharded"), "--device", "cuda:99999")).code).toBe(2);
  expect((await cli("load", fixture("sharded"), "--device", "auto", "--backend", "read")).code).toBe(2);
  expect((await cli("load", fixture("sharded"), "--host-register")).code).toBe(2);
});

/** `source` copied to `name` on disk (not tmpfs), written through, and its pages dropped from the page cache. */
async function evicted(name: string, source = fixture("safetensors/tiny-gpt2.safetensors")): Promise<string> {
  const path = join(dir, name);
  copyFileSync(source, path);
  const fd = openSync(path, "r");
  // Dirty pages are not dropped: written to disk first.
  fsyncSync(fd);
  closeSync(fd);
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new Error(libc.unavailable);
  const raw = libc.openRead(path);
  try {
    libc.posixFadvise(raw, 0, 0, POSIX_FADV_DONTNEED);
  } finally {
    libc.close(raw);
  }
  return path;
}

const noFfi = ffiUnavailable() ?? "";
test.skipIf(noFfi !== "")(`the rate says whether the pages were in memory: cold after eviction, warm after a load, partly warm when some were${noFfi && ` (skipped: ${noFfi})`}`, async () => {
  const path = await evicted("cold.safetensors");
  const cold = await cli("load", path);
  expect(cold.code).toBe(0);
  expect(cold.stdout).toMatch(/^17 tensors, 20\.7 kB in .*: .+ \(cold: pages were read from disk\) \(backend mmap, open .+\)\n$/);
  // The cold load read every page in.
  const warm = JSON.parse((await cli("load", path, "--json")).stdout);
  expect(warm.page_cache).toEqual({ state: "warm", resident_fraction: 1 });
  expect((await cli("load", path)).stdout).toMatch(/ \(warm: pages were in memory\) \(backend mmap, /);
  // 16 MiB dropped, then its first page read: read-ahead brings in some more, far from all.
  const big = join(dir, "big-source.safetensors");
  await save(big, { w: { dtype: "U8", shape: [1 << 24], data: new Uint8Array(1 << 24) } });
  const part = await evicted("part.safetensors", big);
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new Error(libc.unavailable);
  const fd = libc.openRead(part);
  try {
    const page = new Uint8Array(libc.pageSize);
    expect(await libc.pread(fd, libc.address(page), page.byteLength, 0, 1)).toBe(page.byteLength);
  } finally {
    libc.close(fd);
  }
  const partly = JSON.parse((await cli("load", part, "--json")).stdout);
  expect(partly.page_cache.state).toBe("partly warm");
  expect(partly.page_cache.resident_fraction).toBeGreaterThan(0);
  expect(partly.page_cache.resident_fraction).toBeLessThan(0.5);
  // The JSON load read it all in: the line now says warm.
  expect((await cli("load", part)).stdout).toMatch(/ \(warm: pages were in memory\) /);
});

test.skipIf(noFfi === "")("without FFI the page cache state is said to be unknown, not guessed", async () => {
  const r = await cli("load", fixture("safetensors/tiny-gpt2.safetensors"));
  expect(r.stdout).toMatch(/ \(page cache state unknown\) \(backend read, /);
  const json = JSON.parse((await cli("load", fixture("safetensors/tiny-gpt2.safetensors"), "--json")).stdout);
  expect(json.page_cache).toEqual({ state: "unknown", resident_fraction: null, reason: "no FFI on this runtime" });
});

test("--json is one object: totals, device, backend, the page cache state and a per-dtype summary", async () => {
  const r = await cli("load", fixture("sharded"), "--json");
  expect([r.code, r.stderr]).toEqual([0, ""]);
  const doc = JSON.parse(r.stdout);
  expect(doc).toMatchObject({ path: fixture("sharded"), device: "cpu", backend: BACKEND, tensors: 17, bytes: 20_736, reason: null });
  expect(doc.seconds).toBeGreaterThanOrEqual(doc.open_seconds);
  expect(doc.page_cache.state).toMatch(hasFfi() ? /^(warm|cold|partly warm)$/ : /^unknown$/);
  const inspected = JSON.parse((await cli("inspect", fixture("sharded"), "--json")).stdout);
  const dtypes: Record<string, { tensors: number; bytes: number }> = {};
  for (const t of inspected.tensors) {
    const d = (dtypes[t.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += t.data_offsets[1] - t.data_offsets[0];
  }
  expect(doc.dtypes).toEqual(dtypes);
  // A device load's document: the device chosen and why; device loads choose their own reads.
  const auto = JSON.parse((await cli("load", fixture("sharded"), "--device", "auto", "--json")).stdout);
  expect(auto).toMatchObject({ device: "cpu", backend: null, tensors: 17, bytes: 20_736, open_seconds: null });
  expect(auto.reason).toMatch(/^auto chose cpu: /);
});

test("--filter loads what inspect --filter lists, on cpu and device loads; one tensor is '1 tensor'", async () => {
  const globs = ["h.*", "!*.bias"];
  const args = globs.flatMap((g) => ["--filter", g]);
  const listed = JSON.parse((await cli("inspect", fixture("sharded"), "--json", ...args)).stdout).tensors;
  const bytes = listed.reduce((n: number, t: { data_offsets: number[] }) => n + t.data_offsets[1]! - t.data_offsets[0]!, 0);
  expect(listed.length).toBeGreaterThan(1);
  expect(listed.length).toBeLessThan(17);
  for (const device of ["cpu", "auto"]) {
    const doc = JSON.parse((await cli("load", fixture("sharded"), "--device", device, "--json", ...args)).stdout);
    expect([doc.tensors, doc.bytes], device).toEqual([listed.length, bytes]);
  }
  const one = await cli("load", fixture("sharded"), "--filter", "wte.weight");
  expect(one.stdout).toMatch(/^1 tensor, 2\.05 kB in /);
  expect((await cli("load", fixture("sharded"), "--filter", "wte.weight", "--device", "auto")).stdout).toMatch(/^1 tensor, 2\.05 kB in /);
  expect((await cli("load", fixture("sharded"), "--filter", "")).code).toBe(2);
});

test("--quiet: no bar on a terminal; the totals still on stdout", async () => {
  const run = onTerminal;
  // A bar is drawn on a terminal (then erased).
  expect((await run("load", fixture("sharded"))).stderr).toMatch(/^\rload /);
  const q = await run("load", "-q", fixture("sharded"));
  expect([q.code, q.stderr]).toEqual([0, ""]);
  expect(q.stdout).toMatch(/^17 tensors, /);
  expect((await run("load", "--quiet", fixture("sharded"), "--device", "auto")).stderr).toBe("");
});

test("the page cache state in words and as JSON: warm only when every page was in memory, cold only when none was", () => {
  expect(describePageCache({ resident: 5, pages: 5 })).toBe("warm: pages were in memory");
  expect(describePageCache({ resident: 0, pages: 5 })).toBe("cold: pages were read from disk");
  // Rounded down: 99.9% is not called 100%.
  expect(describePageCache({ resident: 999, pages: 1000 })).toBe("partly warm: 99% of pages were in memory");
  expect(describePageCache({ resident: 1, pages: 1000 })).toBe("partly warm: <1% of pages were in memory");
  expect(describePageCache({ unknown: "no FFI on this runtime" })).toBe("page cache state unknown");
  expect(pageCacheJson({ resident: 1, pages: 4 })).toEqual({ state: "partly warm", resident_fraction: 0.25 });
  expect(pageCacheJson({ resident: 0, pages: 0 })).toEqual({ state: "warm", resident_fraction: 1 });
});
