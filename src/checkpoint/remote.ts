/**
 * What an `http(s)://` (or `hf://`, `s3://`: see ../io/remote/hub.ts, s3.ts) checkpoint URL means, and opening it: a URL ending in `/` is a model folder (its
 * `model.safetensors.index.json`, then `model.safetensors`, then the PyTorch names, as for a local folder), one
 * ending in `.json` an index, anything else one file. Opening reads headers only; tensors come with `prefetch`.
 */
import { basename } from "node:path";
import { namingFile, SafetensorsError } from "../errors.ts";
import { DTYPES } from "../format/dtypes.ts";
import { headerLength } from "../format/header.ts";
import { folderFiles, indexFormat, MAX_INDEX_BYTES, type ShardIndex } from "../format/sharded.ts";
import { loadLibc } from "../io/libc.ts";
import { sourceOpener, type SourceOptions } from "../io/open-source.ts";
import { readSmallFile } from "../io/small-file.ts";
import type { ByteSource } from "../io/source.ts";
import { remoteAddress } from "../io/remote/address.ts";
import { pinRevision } from "../io/remote/hub.ts";
import { openHttpSource, refuseOver, remoteTransfers, type HttpSource, type RemoteTransfers } from "../io/remote/http-source.ts";
import { remoteStatus } from "../io/remote/http-object.ts";
import type { RemoteOptions } from "../io/remote/options.ts";
import { parseRemoteUrl, siblingUrl } from "../io/remote/url.ts";
import { isPytorch } from "../pickle/layout.ts";
import type { Checkpoint, CheckpointFile, CheckpointFormat } from "./checkpoint.ts";
import { fileFromSource, type SafetensorsFile } from "./file.ts";
import { decodeIndex } from "./index-text.ts";
import { ShardedFile } from "./sharded.ts";
import { planSlice, sliceReads, type SliceSpec } from "./slice.ts";
import { Tensor } from "./tensor.ts";

/** What the files of one remote open share: the transfers, and the opener of cached copies (the backend asked for). */
interface RemoteOpen {
  transfers: RemoteTransfers;
  /** Present where there is a cache. */
  openLocal?: (path: string) => ByteSource;
}

/**
 * Opens a remote file's header (one ranged GET for most files, a second when the header is longer than the
 * first read): a {@link SafetensorsFile} whose tensors need `prefetch` before `tensor()`. A PyTorch file is fetched
 * whole, since its pickle and zip directory are read at open. Where the cache holds a copy of the version that
 * first answer names, the copy opens instead, as a local file (mapped where there is FFI).
 *
 * @example
 * ```ts
 * const file = await openRemoteFile("https://example.com/model.safetensors", { transfers: remoteTransfers({ cache: "/tmp/cache" }), openLocal: await sourceOpener() });
 * await file.prefetch();
 * ```
 */
async function openRemoteFile(url: string, at: RemoteOpen): Promise<SafetensorsFile> {
  const source = await openHttpSource(url, at.transfers);
  if (source.cachedCopy) {
    const file = fromCache(source, (path) => fileFromSource(at.openLocal!(path)));
    source.close();
    return file ?? openRemoteFile(url, at);
  }
  try {
    await fetchHeader(source);
  } catch (e) {
    source.close();
    throw e;
  }
  const file = fileFromSource(source);
  fetched.set(file, at.transfers.opts.gapBytes);
  return file;
}

/**
 * Files whose bytes come over the network (a cached copy opens as a local file, not one of these), and their
 * open's `gapBytes`.
 */
const fetched = new WeakMap<CheckpointFile, number>();

/**
 * Part of a tensor, as `model.slice(name, spec)` gives it, also where the checkpoint is remote and the tensor not
 * fetched: only the byte runs the slice needs are fetched (runs at most the remote option `gapBytes` apart in one
 * ranged read, in parallel parts), into the result and nowhere else. For a local file (or a cached copy) it is `slice()` itself.
 *
 * @example
 * ```ts
 * import { fetchSlice, openCheckpoint } from "tensormap";
 * using model = await openCheckpoint("model.safetensors"); // or an https://, s3:// or hf:// address
 * const rows = await fetchSlice(model, "wte.weight", [[0, 10], null]);
 * console.log(rows.shape); // [10, 16]
 * ```
 */
export async function fetchSlice(model: Checkpoint, name: string, spec: SliceSpec): Promise<Tensor> {
  const file = model.shard(model.info(name).file ?? model.files[0]!);
  const gapBytes = fetched.get(file);
  if (gapBytes === undefined) return file.slice(name, spec);
  const e = file.entry(name);
  if (e.gather) {
    // A strided PyTorch storage is gathered from the whole of it.
    await file.prefetch([name]);
    return file.slice(name, spec);
  }
  const plan = planSlice(name, e.shape, DTYPES.get(e.dtype)!.bits, spec);
  const out = new Uint8Array(plan.byteLength);
  await Promise.all(
    sliceReads(plan, gapBytes).map(async ({ offset, length, pieces }) => {
      if (pieces.length === 1) return file.source.read(e.start + offset, length, out.subarray(pieces[0]![1], pieces[0]![1] + length));
      const span = new Uint8Array(length);
      await file.source.read(e.start + offset, length, span);
      for (const [from, to, n] of pieces) out.set(span.subarray(from, from + n), to);
    }),
  );
  return new Tensor(name, e.dtype, plan.shape, out);
}

async function fetchHeader(source: HttpSource): Promise<void> {
  const prefix = source.bytes(0, Math.min(8, source.size));
  if (isPytorch(prefix)) return source.prefetch(0, source.size);
  let end: number;
  try {
    end = 8 + headerLength(prefix, source.size);
  } catch {
    // A bad length prefix: fileFromSource reports it exactly as for a local file; nothing more to fetch.
    return;
  }
  await source.prefetch(0, end);
}

/**
 * Opens whatever a checkpoint URL names (see the module comment); `format` limits a folder to that format's files. A sharded checkpoint opens every shard's header
 * at once, in parallel, so that shards need no request of their own later.
 *
 * @example
 * ```ts
 * import { openCheckpoint } from "tensormap";
 * using model = await openCheckpoint("https://example.com/gpt2/"); // its model.safetensors.index.json
 * await model.prefetch();
 * console.log(model.tensor("wte.weight").shape);
 * ```
 */
export async function openRemoteCheckpoint(url: string, options: RemoteOptions = {}, format?: CheckpointFormat, local: SourceOptions = {}): Promise<Checkpoint> {
  const address = remoteAddress(url, options);
  url = address.url;
  const ffi = await loadLibc();
  const transfers = remoteTransfers(address.options, "unavailable" in ffi ? undefined : ffi, address.sign);
  // The backend options matter only for cached copies, which are local files.
  const at: RemoteOpen = { transfers, openLocal: transfers.cache ? await sourceOpener(local) : undefined };
  const { href, shown } = parseRemoteUrl(url);
  const path = new URL(href).pathname;
  if (path.endsWith(".json")) return openRemoteIndex(url, at);
  if (!path.endsWith("/")) return openRemoteFile(url, at);
  const names = folderFiles(format);
  for (const name of names) {
    try {
      const file = siblingUrl(url, name);
      return await (name.endsWith(".json") ? openRemoteIndex(file, at) : openRemoteFile(file, at));
    } catch (e) {
      if (remoteStatus(e) !== 404) throw e;
    }
  }
  throw new SafetensorsError("ENOENT", `${shown} holds no checkpoint (none of ${names.join(", ")})`);
}

async function openRemoteIndex(url: string, at: RemoteOpen): Promise<ShardedFile> {
  const source = await openHttpSource(url, at.transfers);
  let index: ShardIndex | undefined;
  try {
    refuseOver(source, MAX_INDEX_BYTES);
    if (source.cachedCopy) {
      index = fromCache(source, (path) => decodeIndex(readSmallFile(path, MAX_INDEX_BYTES), source.path));
    } else {
      await source.prefetch(0, source.size);
      index = decodeIndex(source.bytes(0, source.size), source.path);
    }
  } finally {
    source.close();
  }
  if (!index) return openRemoteIndex(url, at);
  const format = indexFormat(new URL(url).pathname.split("/").at(-1)!, index.shards);
  // Every shard from the commit the index came from, should the hub's branch move meanwhile.
  const opened = await Promise.allSettled(index.shards.map((shard) => openRemoteFile(pinRevision(siblingUrl(url, shard), source.commit), at)));
  const failed = opened.findIndex((r) => r.status === "rejected");
  if (failed >= 0) {
    for (const r of opened) if (r.status === "fulfilled") r.value.close();
    const e = (opened[failed] as PromiseRejectedResult).reason;
    const shard = index.shards[failed]!;
    if (remoteStatus(e) === 404) throw new SafetensorsError("MissingShard", `${source.path} names shard ${shard}, which is not there (HTTP 404)`);
    throw namingFile(e, shard);
  }
  const files = new Map(index.shards.map((shard, i) => [shard, (opened[i] as PromiseFulfilledResult<SafetensorsFile>).value]));
  // ShardedFile opens a shard by path when first needed: hand it the one already open, once (a second open
  // would need the header fetched again).
  const take = (path: string): SafetensorsFile => {
    const file = files.get(basename(path));
    if (!file) throw new SafetensorsError("Closed", `${basename(path)}: a remote shard is opened with its checkpoint, not again`);
    files.delete(basename(path));
    return file;
  };
  const model = new ShardedFile(source.path, index, format, take);
  try {
    for (const shard of index.shards) model.shard(shard);
  } catch (e) {
    model.close();
    for (const f of files.values()) f.close();
    throw e;
  }
  return model;
}

/**
 * What `use` makes of a source's cached copy; undefined, the copy refused, when it does not read as its format
 * (edited or cut in place since it was written): the caller then fetches the URL anew.
 */
function fromCache<T>(source: HttpSource, use: (path: string) => T): T | undefined {
  try {
    return use(source.cachedCopy!);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw e;
    source.refuseCachedCopy();
    return undefined;
  }
}
