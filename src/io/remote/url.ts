/** What a remote address is, and how it may be shown: never with its credentials. */
import { SafetensorsError } from "../../errors.ts";

/**
 * Whether a checkpoint path is remote: an HTTP(S) URL, an S3 address (`s3://`) or a Hugging Face Hub address
 * (`hf://`), not a local path.
 *
 * @example
 * ```ts
 * import { isRemoteUrl } from "tensormap";
 * console.log(isRemoteUrl("https://example.com/model.safetensors"), isRemoteUrl("checkpoints/gpt2")); // true false
 * ```
 */
export function isRemoteUrl(path: string): boolean {
  return /^(https?|hf|s3):\/\//i.test(path);
}

/**
 * A remote path as it may be shown: an `hf://` or `s3://` address as it is, a URL as {@link parseRemoteUrl} shows it.
 *
 * @example
 * ```ts
 * showUrl("https://me:secret@example.com/m.safetensors"); // "https://example.com/m.safetensors"
 * ```
 */
export function showUrl(path: string): string {
  return /^(hf|s3):\/\//i.test(path) ? path : parseRemoteUrl(path).shown;
}

/** A parsed remote address: where to send requests, what to show, and the credentials it carried. */
export interface RemoteUrl {
  /** The URL requests go to, without user and password (fetch refuses those). */
  href: string;
  /** The URL for messages: no credentials, and the query (a presigned signature, a token) elided. */
  shown: string;
  /** `Authorization` for credentials given in the URL (`https://user:pass@host/…`). */
  authorization?: string;
}

/**
 * Parses an `http://` or `https://` URL; anything else is `InvalidArgument`.
 *
 * @example
 * ```ts
 * parseRemoteUrl("https://me:secret@example.com/m.safetensors?sig=abc").shown; // "https://example.com/m.safetensors?…"
 * ```
 */
export function parseRemoteUrl(text: string): RemoteUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SafetensorsError("InvalidArgument", `not a URL: ${JSON.stringify(text.replace(/\/\/[^/@]*@/, "//"))}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SafetensorsError("InvalidArgument", `${url.protocol} URLs are not supported (http: or https:)`);
  }
  const authorization = url.username || url.password ? `Basic ${btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`)}` : undefined;
  url.username = "";
  url.password = "";
  const shown = `${url.origin}${url.pathname}${url.search ? "?…" : ""}`;
  return { href: url.href, shown, authorization };
}

/**
 * The URL of `name` in the same folder as `base` (or under it, when `base` ends in `/`): credentials kept, query not
 * (a presigned query signs one object).
 *
 * @example
 * ```ts
 * siblingUrl("https://h/m/model.safetensors.index.json", "model-00001-of-00002.safetensors"); // "https://h/m/model-00001-of-00002.safetensors"
 * ```
 */
export function siblingUrl(base: string, name: string): string {
  const url = new URL(base);
  const credentials = { username: url.username, password: url.password };
  const sibling = new URL(encodeURIComponent(name), url);
  Object.assign(sibling, credentials);
  return sibling.href;
}
