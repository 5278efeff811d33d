/**
 * `config.json` beside a remote checkpoint (http(s), `s3://`, `hf://`), for the tensor-parallel plans' head counts:
 * one small GET from the checkpoint URL's folder, signed and authorized as the checkpoint's own requests are.
 */
import { remoteStatus } from "../io/remote/http-object.ts";
import { openHttpSource, refuseOver, remoteTransfers } from "../io/remote/http-source.ts";
import { remoteAddress } from "../io/remote/address.ts";
import { pinRevision } from "../io/remote/hub.ts";
import type { RemoteOptions } from "../io/remote/options.ts";
import { isS3Url } from "../io/remote/s3.ts";
import { siblingUrl } from "../io/remote/url.ts";

/**
 * The bytes of `config.json` in the folder of checkpoint `url` (a file, an index, or a folder ending in `/`), or
 * null where there is none (404; on S3 also 403, which S3 answers for a missing key to a reader that may not list
 * the bucket, while the weights beside it just read with the same credentials). `commit` pins a Hub address to
 * the commit the weights came from. At most `cap` bytes (`FileTooLarge` past that).
 *
 * @example
 * ```ts
 * const bytes = await fetchBesideUrl("https://example.com/llama/model.safetensors", "config.json", 16 << 20);
 * ```
 */
export async function fetchBesideUrl(url: string, name: string, cap: number, remote: RemoteOptions = {}, commit?: string): Promise<{ bytes: Uint8Array; shown: string } | null> {
  const s3 = isS3Url(url);
  const address = remoteAddress(url, remote);
  let source;
  try {
    source = await openHttpSource(pinRevision(siblingUrl(address.url, name), commit), remoteTransfers(address.options, undefined, address.sign));
  } catch (e) {
    const status = remoteStatus(e);
    if (status === 404 || (s3 && status === 403)) return null;
    throw e;
  }
  try {
    refuseOver(source, cap);
    await source.prefetch(0, source.size);
    return { bytes: source.bytes(0, source.size), shown: source.path };
  } finally {
    source.close();
  }
}
