/** A remote checkpoint address (http(s), `hf://`, `s3://`) as its requests go out. */
import { hubHttpUrl, isHubUrl, withHubToken } from "./hub.ts";
import type { RemoteOptions } from "./options.ts";
import { isS3Url, s3HttpUrl, s3Signer, type RequestSigner } from "./s3.ts";

/**
 * The HTTP(S) URL an address is fetched from, the options with the Hub token where it is `hf://`, and the S3
 * signer where it is `s3://` (and credentials are set): one rule for the checkpoint and the files beside it.
 *
 * @example
 * ```ts
 * remoteAddress("s3://bucket/model.safetensors", {}).url; // "https://bucket.s3.us-east-1.amazonaws.com/model.safetensors"
 * ```
 */
export function remoteAddress(url: string, options: RemoteOptions): { url: string; options: RemoteOptions; sign?: RequestSigner } {
  if (isHubUrl(url)) return { url: hubHttpUrl(url), options: withHubToken(options) };
  if (isS3Url(url)) return { url: s3HttpUrl(url), options, sign: s3Signer() };
  return { url, options };
}
