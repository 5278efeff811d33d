import { expect, test } from "vitest";
import { touchAll } from "../../src/cli/load.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { hasFfi } from "../../ffi/runtime.ts";
import { cli } from "../support/cli.ts";
import { fixture } from "../support/fixtures.ts";

const quiet = { write: () => {} };
/** The backend a default open must choose here: mmap wherever there is FFI. */
const BACKEND = hasFfi() ? "mmap" : "read";

test("load reads every tensor of a sharded checkpoint and reports the totals", async () => {
  const r = await cli("load", fixture("sharded"));
  expect(r.code).toBe(0);
  const m = new RegExp(`^17 tensors, 20\\.7 kB in (\\d+\\.\\d+) (m?)s: (\\d+(?:\\.\\d+)? [kMGT]?B/s|-) \\(backend ${BACKEND}, open (\\d+\\.\\d+) (m?)s\\)\n$`).exec(r.stdout);
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
  expect(r.stdout).toMatch(/^17 tensors, 20\.7 kB in .* \(device cpu\)\nauto chose cpu: no usable GPU \(.+\)\n$/);
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
