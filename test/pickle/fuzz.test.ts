import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { SafetensorsError } from "../../src/errors.ts";
import { openPytorchLayout } from "../../src/pickle/layout.ts";
import { readZip } from "../../src/pickle/zip.ts";
import { memorySource, Pickle, torchZip } from "./build.ts";

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
  for (const e of entries.entries) {
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

/**
 * A random object graph with long keys shared through the memo: dicts and lists that hold each other
 * (and themselves) under keys of up to 1 MiB, some wrapped in tuples. Every op leaves the root alone on the stack.
 */
function sharedGraph(random: () => number): Uint8Array {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const p = new Pickle().proto().emptyDict().raw(0x71, 0);
  const containers = [0];
  const keys: number[] = [];
  let slot = 1;
  for (let i = 0; i < 4; i++, slot++) {
    p.str(pick(["k", "w".repeat(300), "K".repeat(70_000), "L".repeat(1 << 20)])).raw(0x71, slot, 0x30);
    keys.push(slot);
  }
  for (let i = 0; i < 4; i++, slot++) {
    (random() < 0.5 ? p.emptyDict() : p.raw(0x5d)).raw(0x71, slot, 0x30);
    containers.push(slot);
  }
  for (let i = 0; i < 40; i++) {
    const target = pick(containers);
    p.raw(0x68, target);
    // Only dicts take keys; SETITEM on a list (or APPEND on a dict) is itself a case the reader must refuse.
    if (random() < 0.7) {
      if (random() < 0.3) p.mark().raw(0x68, pick(keys), 0x68, pick(keys)).tuple();
      else p.raw(0x68, pick(keys));
      p.raw(0x68, pick(containers), 0x73, 0x30);
    } else {
      p.raw(0x68, pick(containers), 0x61, 0x30);
    }
  }
  return p.stop().bytes();
}

test("long keys shared through the memo only ever yield SafetensorsError", () => {
  // The simplest such graph, {K: itself} with a 1 MiB K, once built names of gigabytes.
  const self = new Pickle().proto().emptyDict().raw(0x71, 0).str("K".repeat(1 << 20)).raw(0x68, 0, 0x73).stop().bytes();
  expect(attempt(torchZip(self, {}))).toBe("InvalidPickle");
  const random = rng(0x10c4);
  const codes = new Set<string>();
  for (let i = 0; i < 30; i++) codes.add(attempt(torchZip(sharedGraph(random), {})));
  expect(codes.has("InvalidPickle")).toBe(true);
});
