import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { openPytorchLayout } from "../../src/pickle/index.ts";
import { readZip } from "../../src/pickle/zip.ts";
import { memorySource, torchZip } from "./build.ts";

const dir = path.resolve(process.cwd(), "../shared/fixtures/torch");

/** xorshift32: the same inputs on every run and runtime. */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function mutate(input: Uint8Array, random: () => number): Uint8Array {
  const out = Array.from(input);
  const edits = 1 + Math.floor(random() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * out.length);
    const kind = random();
    const byte = random() < 0.3 ? [0x00, 0xff, 0x7f, 0x80, 0x28, 0x2e, 0x51, 0x52, 0x68, 0x71][Math.floor(random() * 10)]! : Math.floor(random() * 256);
    if (kind < 0.5) out[at] = byte;
    else if (kind < 0.7) out.splice(at, 0, byte);
    else if (kind < 0.85) out.splice(at, 1 + Math.floor(random() * 8));
    else out.length = at;
  }
  return Uint8Array.from(out);
}

/** Opens (and reads every tensor of) a file; returns the error code, or "ok". Anything but a SafetensorsError fails the test. */
function attempt(bytes: Uint8Array): string {
  try {
    const source = memorySource(bytes);
    const layout = openPytorchLayout(source);
    for (const e of layout.entries.values()) {
      const data = e.gather ? e.gather(source) : source.bytes(e.start, e.byteLength);
      expect(data.length).toBe(e.byteLength);
    }
    return "ok";
  } catch (e) {
    if (e instanceof SafetensorsError) return e.code;
    throw e;
  }
}

test("mutated pickles only ever yield SafetensorsError", () => {
  const archive = readFileSync(path.join(dir, "state-dict.pt"));
  const source = memorySource(archive);
  const entries = readZip(source);
  const pkl = entries.get("state-dict/data.pkl")!;
  const pickle = source.bytes(pkl.offset, pkl.size);
  const storages: Record<string, Uint8Array> = {};
  for (const e of entries.values()) {
    const m = /^state-dict\/data\/(.+)$/.exec(e.name);
    if (m) storages[m[1]!] = source.bytes(e.offset, e.size);
  }
  const random = rng(0x5eed);
  const codes = new Set<string>();
  for (let i = 0; i < 1500; i++) codes.add(attempt(torchZip(mutate(pickle, random), storages)));
  // The mutations reach deep enough to produce several distinct failures (and some still-valid files).
  expect(codes.size).toBeGreaterThan(2);
});

test.each(["state-dict-legacy.pt", "training-checkpoint.pt", "torch113-zip.pt"])("mutated %s files only ever yield SafetensorsError", (file) => {
  const whole = readFileSync(path.join(dir, file));
  const random = rng(file.length * 7919);
  for (let i = 0; i < 600; i++) attempt(mutate(whole, random));
});

test("random bytes behind a pickle header only ever yield SafetensorsError", () => {
  const random = rng(42);
  for (let i = 0; i < 2000; i++) {
    const body = Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256));
    attempt(Uint8Array.from([0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, ...body]));
    attempt(torchZip(Uint8Array.from([0x80, 2, ...body]), { "0": new Uint8Array(64) }));
  }
});
