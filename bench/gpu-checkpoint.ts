/**
 * bench/gpu.ts's checkpoint and what is known of it without tensormap's reader: transformer-like bf16 layers
 * written as Hugging Face shards, each tensor's hash read straight from the files (a header parse of this file's
 * own: the reader is what is under test), and eviction from the page cache for the cold runs.
 */
import { createHash } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { POSIX_FADV_DONTNEED } from "../ffi/types.ts";
import { writeShards } from "../src/checkpoint/save.ts";
import { fillRandom } from "../src/cli/random.ts";
import { INDEX_FILE, parseIndex } from "../src/format/sharded.ts";
import { loadLibc } from "../src/io/libc.ts";

/** Fast enough to check gigabytes twice per load mode (about 2 GB/s a core); the peers hash with the same. */
export const HASH = "sha1";

export interface TensorShape {
  name: string;
  shape: number[];
  byteLength: number;
}

/** What to write: tensors in file order and their total size. */
export interface Layout {
  tensors: TensorShape[];
  bytes: number;
}

/**
 * About `gb` GB of layers (an MLP's two matrices, a norm and an odd-sized bias that leaves every later tensor off
 * the device's 256-byte alignment in the file). Small checkpoints get smaller matrices, so a dry run still
 * has many tensors in every shard.
 *
 * @example
 * ```ts
 * layout(8).tensors.length; // 240: 60 layers of 2 × 64 MiB matrices and two vectors
 * ```
 */
export function layout(gb: number): Layout {
  const [hidden, ffn] = gb >= 2 ? [4096, 8192] : [1024, 2048];
  const layers = Math.max(2, Math.round((gb * 1e9) / (2 * hidden * ffn * 2)));
  const tensors: TensorShape[] = [];
  const add = (name: string, shape: number[]) => tensors.push({ name, shape, byteLength: shape.reduce((a, b) => a * b, 1) * 2 });
  for (let l = 0; l < layers; l++) {
    add(`model.layers.${l}.mlp.up_proj.weight`, [ffn, hidden]);
    add(`model.layers.${l}.mlp.down_proj.weight`, [hidden, ffn]);
    add(`model.layers.${l}.post_attention_layernorm.weight`, [hidden]);
    add(`model.layers.${l}.mlp.odd.bias`, [hidden + 1]);
  }
  return { tensors, bytes: tensors.reduce((a, t) => a + t.byteLength, 0) };
}

/** A written checkpoint: its folder, shard paths in load order, and whether this run wrote it. */
export interface Written {
  dir: string;
  shards: string[];
  reused: boolean;
  seconds: number;
}

/**
 * Writes the layout into `dir` as about `shards` shards plus the index, unless a checkpoint of that size is
 * there already. Each tensor is a random bf16 block in ±[0.5, 1) rotated by a tensor-specific amount: distinct
 * per tensor (a tensor landing in another's place is caught) and made at memcpy speed.
 *
 * @example
 * ```ts
 * const { shards } = await ensureCheckpoint("bench/data/gpu-8gb", layout(8), 4); // 4 files of about 2 GB
 * ```
 */
export async function ensureCheckpoint(dir: string, plan: Layout, shards: number): Promise<Written> {
  const t0 = performance.now();
  const existing = readIndex(dir);
  if (existing?.total === plan.bytes && existing.names === plan.tensors.length) {
    return { dir, shards: existing.shards, reused: true, seconds: 0 };
  }
  const largest = Math.max(...plan.tensors.map((t) => t.byteLength));
  const base = new Uint8Array(fillRandom(new Uint32Array(largest / 4), 0x9e3779b9, 0x807f807f, 0x3f003f00).buffer);
  const order = new Map(plan.tensors.map((t, k) => [t.name, k]));
  const bytes = (name: string) => rotated(base, order.get(name)!, plan.tensors[order.get(name)!]!.byteLength);
  // Greedy shards of at most a share plus one tensor: never more than `shards` of them.
  const maxShardSize = Math.ceil(plan.bytes / shards) + largest;
  const shapes = plan.tensors.map((t) => [t.name, { dtype: "BF16" as const, shape: t.shape, byteLength: t.byteLength }] as const);
  await writeShards(dir, shapes, bytes, { maxShardSize });
  return { dir, shards: readIndex(dir)!.shards, reused: false, seconds: (performance.now() - t0) / 1000 };
}

/** `length` bytes of `base` starting at a k-dependent offset (a multiple of 4: whole bf16 values), wrapping. */
function rotated(base: Uint8Array, k: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const shift = (k * 40_964) % base.byteLength;
  for (let at = 0; at < length; ) {
    const from = (shift + at) % base.byteLength;
    const n = Math.min(length - at, base.byteLength - from);
    out.set(base.subarray(from, from + n), at);
    at += n;
  }
  return out;
}

function readIndex(dir: string): { total: unknown; names: number; shards: string[] } | null {
  const path = join(dir, INDEX_FILE);
  if (!existsSync(path)) return null;
  const index = parseIndex(readFileSync(path, "utf8"), path);
  return { total: index.metadata?.total_size, names: index.weightMap.size, shards: index.shards.map((s) => join(dir, s)) };
}

/** A tensor where the file has it: absolute byte range, by this file's own header parse. */
export interface FileTensor {
  name: string;
  file: string;
  start: number;
  byteLength: number;
}

/**
 * The tensors of a safetensors file in file order, from its header (8-byte length, JSON, data).
 *
 * @example
 * ```ts
 * fileTensors("model-00001-of-00004.safetensors")[0]; // { name, file, start: 8 + header length, byteLength }
 * ```
 */
export function fileTensors(path: string): FileTensor[] {
  const fd = openSync(path, "r");
  try {
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, 0);
    const n = Number(head.readBigUInt64LE());
    const json = Buffer.alloc(n);
    readSync(fd, json, 0, n, 8);
    const entries = Object.entries(JSON.parse(json.toString("utf8")) as Record<string, { data_offsets: [number, number] }>);
    return entries
      .filter(([name]) => name !== "__metadata__")
      .map(([name, e]) => ({ name, file: path, start: 8 + n + e.data_offsets[0], byteLength: e.data_offsets[1] - e.data_offsets[0] }))
      .sort((a, b) => a.start - b.start);
  } finally {
    closeSync(fd);
  }
}

/**
 * Each tensor's {@link HASH} over its bytes as the file holds them (read in 64 MiB pieces).
 *
 * @example
 * ```ts
 * const hashes = hashFileTensors(shards.flatMap(fileTensors)); // name → hex
 * ```
 */
export function hashFileTensors(tensors: FileTensor[]): Map<string, string> {
  const piece = Buffer.alloc(64 << 20);
  const out = new Map<string, string>();
  const fds = new Map<string, number>();
  try {
    for (const t of tensors) {
      if (!fds.has(t.file)) fds.set(t.file, openSync(t.file, "r"));
      const hash = createHash(HASH);
      for (let done = 0; done < t.byteLength; ) {
        const n = readSync(fds.get(t.file)!, piece, 0, Math.min(piece.byteLength, t.byteLength - done), t.start + done);
        if (n <= 0) throw new Error(`${t.file} ends inside ${t.name}`);
        hash.update(piece.subarray(0, n));
        done += n;
      }
      out.set(t.name, hash.digest("hex"));
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return out;
}

/** {@link HASH} of bytes, as hex. */
export function digest(bytes: Uint8Array): string {
  return createHash(HASH).update(bytes).digest("hex");
}

/** How files were evicted, and whether the page cache shrank by about their size. */
export interface Eviction {
  method: string;
  droppedBytes: number;
  verified: boolean;
}

/**
 * Evicts files from the page cache: fsync (DONTNEED drops clean pages only), then posix_fadvise(DONTNEED) through
 * tensormap's libc binding. Checked by the page cache's size in /proc/meminfo, which must fall by half the
 * files' size at least (the callers evict files that were just read). When it did not and `dropCaches` allows,
 * writes 1 to /proc/sys/vm/drop_caches (root; it drops every file's pages, so only on a machine of our own).
 *
 * @example
 * ```ts
 * const e = await evict(shards, 8e9, false); // { method: "posix_fadvise(DONTNEED)", droppedBytes, verified }
 * ```
 */
export async function evict(paths: string[], bytes: number, dropCaches: boolean): Promise<Eviction> {
  const libc = await loadLibc();
  if ("unavailable" in libc) throw new Error(`cannot evict: ${libc.unavailable}`);
  const before = pageCacheBytes();
  for (const path of paths) {
    const sync = openSync(path, "r");
    fsyncSync(sync);
    closeSync(sync);
    const fd = libc.openRead(path);
    try {
      libc.posixFadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    } finally {
      libc.close(fd);
    }
  }
  let method = "posix_fadvise(DONTNEED)";
  let dropped = before - pageCacheBytes();
  if (!(dropped >= bytes / 2) && dropCaches) {
    try {
      writeFileSync("/proc/sys/vm/drop_caches", "1");
      method += " + drop_caches";
    } catch (e) {
      method += `; drop_caches refused (${(e as NodeJS.ErrnoException).code})`;
    }
    dropped = before - pageCacheBytes();
  }
  return { method, droppedBytes: dropped, verified: dropped >= bytes / 2 };
}

/** "Cached:" of /proc/meminfo in bytes (NaN where there is none). */
function pageCacheBytes(): number {
  const m = /^Cached:\s+(\d+) kB/m.exec(readFileSync("/proc/meminfo", "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}
