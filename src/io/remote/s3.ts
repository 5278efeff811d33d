/**
 * S3 addresses: `s3://BUCKET/KEY` goes to `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) path-style, for S3-compatible
 * stores, else to AWS virtual-hosted (`https://BUCKET.s3.REGION.amazonaws.com/KEY`; path-style for a bucket with a
 * dot, which a certificate for `*.s3…` cannot cover). Requests are signed (SigV4) with `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` where set, unsigned (a public bucket) otherwise; the region is
 * `AWS_REGION`, `AWS_DEFAULT_REGION` or us-east-1. A KEY ending in `/` (or none) is a folder.
 */
import { readEnv } from "../../../ffi/runtime.ts";
import { SafetensorsError } from "../../errors.ts";
import { signV4 } from "./sigv4.ts";

/** Adds signature headers to a request of `url` carrying `headers`. */
export type RequestSigner = (url: string, headers: Record<string, string>) => Promise<Record<string, string>>;

/**
 * Whether a path is an `s3://` address.
 *
 * @example
 * ```ts
 * isS3Url("s3://models/gpt2/"); // true
 * ```
 */
export function isS3Url(path: string): boolean {
  return /^s3:\/\//i.test(path);
}

/**
 * The HTTP(S) URL an `s3://` address resolves to; `InvalidArgument` for one without a bucket.
 *
 * @example
 * ```ts
 * s3HttpUrl("s3://models/gpt2/model.safetensors", { AWS_REGION: "eu-west-1" }); // "https://models.s3.eu-west-1.amazonaws.com/gpt2/model.safetensors"
 * s3HttpUrl("s3://models/gpt2/", { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" }); // "http://127.0.0.1:9000/models/gpt2/"
 * ```
 */
export function s3HttpUrl(address: string, env: (name: string) => string | undefined = readEnv): string {
  const [bucket, ...key] = address.slice("s3://".length).split("/");
  if (!bucket || !/^[a-z0-9][a-z0-9.-]{1,62}$/.test(bucket)) throw new SafetensorsError("InvalidArgument", `${JSON.stringify(address)} is not s3://BUCKET/KEY`);
  const path = key.map(encodeURIComponent).join("/");
  const endpoint = env("AWS_ENDPOINT_URL_S3") || env("AWS_ENDPOINT_URL");
  if (endpoint) return `${endpoint.replace(/\/+$/, "")}/${bucket}/${path}`;
  const region = regionOf(env);
  return bucket.includes(".") ? `https://s3.${region}.amazonaws.com/${bucket}/${path}` : `https://${bucket}.s3.${region}.amazonaws.com/${path}`;
}

/**
 * A SigV4 signer from the standard variables, or undefined where no credentials are set.
 *
 * @example
 * ```ts
 * const sign = s3Signer();
 * const extra = sign ? await sign(url, { range: "bytes=0-9" }) : {};
 * ```
 */
export function s3Signer(env: (name: string) => string | undefined = readEnv): RequestSigner | undefined {
  const accessKeyId = env("AWS_ACCESS_KEY_ID");
  const secretAccessKey = env("AWS_SECRET_ACCESS_KEY");
  if (!accessKeyId || !secretAccessKey) return undefined;
  const credentials = { accessKeyId, secretAccessKey, sessionToken: env("AWS_SESSION_TOKEN") || undefined };
  const region = regionOf(env);
  return (url, headers) => signV4(url, headers, credentials, region);
}

function regionOf(env: (name: string) => string | undefined): string {
  return env("AWS_REGION") || env("AWS_DEFAULT_REGION") || "us-east-1";
}
