/**
 * Hugging Face Hub addresses: `hf://OWNER/REPO[@REVISION][/PATH]` (also `hf://datasets/…`, `hf://spaces/…`) is
 * `${HF_ENDPOINT:-https://huggingface.co}/[TYPE/]OWNER/REPO/resolve/REVISION/PATH`, REVISION `main` unless given. No
 * PATH, or one ending in `/`, is a folder. `HF_TOKEN` goes as a bearer token to the endpoint (a redirect to the CDN
 * goes without it, as `fetch` does for another origin).
 */
import { readEnv } from "../../../ffi/runtime.ts";
import { SafetensorsError } from "../../errors.ts";
import type { RemoteOptions } from "./options.ts";

const DEFAULT_ENDPOINT = "https://huggingface.co";

/**
 * Whether a path is an `hf://` address.
 *
 * @example
 * ```ts
 * isHubUrl("hf://openai-community/gpt2"); // true
 * ```
 */
export function isHubUrl(path: string): boolean {
  return /^hf:\/\//i.test(path);
}

/**
 * The HTTPS URL an `hf://` address resolves to; `InvalidArgument` for one that names no repository.
 *
 * @example
 * ```ts
 * hubHttpUrl("hf://openai-community/gpt2@v1/model.safetensors"); // "https://huggingface.co/openai-community/gpt2/resolve/v1/model.safetensors"
 * hubHttpUrl("hf://openai-community/gpt2"); // "https://huggingface.co/openai-community/gpt2/resolve/main/": a folder
 * ```
 */
export function hubHttpUrl(address: string, endpoint = readEnv("HF_ENDPOINT") || DEFAULT_ENDPOINT): string {
  const parts = address.slice("hf://".length).split("/");
  const kind = parts[0] === "datasets" || parts[0] === "spaces" ? `${parts.shift()}/` : "";
  const [owner, repoAt, ...path] = parts;
  const [repo, revision = "main", ...more] = (repoAt ?? "").split("@");
  if (!owner || !repo || more.length > 0 || revision === "") {
    throw new SafetensorsError("InvalidArgument", `${JSON.stringify(address)} is not hf://OWNER/REPO[@REVISION][/PATH]`);
  }
  const file = path.map(encodeURIComponent).join("/");
  return `${endpoint.replace(/\/+$/, "")}/${kind}${owner}/${repo}/resolve/${encodeURIComponent(decodeURIComponent(revision))}/${file}`;
}

/**
 * Remote options with `HF_TOKEN` as the bearer token, unless they carry an `Authorization` of their own.
 *
 * @example
 * ```ts
 * withHubToken({}).headers; // { authorization: "Bearer hf_…" } where HF_TOKEN is set
 * ```
 */
export function withHubToken(options: RemoteOptions = {}): RemoteOptions {
  const token = readEnv("HF_TOKEN");
  const headers = options.headers ?? {};
  if (!token || Object.keys(headers).some((h) => h.toLowerCase() === "authorization")) return options;
  return { ...options, headers: { ...headers, authorization: `Bearer ${token}` } };
}

/**
 * A Hub resolve URL pinned to the commit the first answer named (`X-Repo-Commit`), so that every shard comes from
 * the same commit even if the branch moves during the load. Other URLs come back unchanged.
 *
 * @example
 * ```ts
 * pinRevision("https://huggingface.co/o/r/resolve/main/model-00001-of-00002.safetensors", "0123abc"); // …/resolve/0123abc/…
 * ```
 */
export function pinRevision(url: string, commit: string | undefined): string {
  if (!commit || !/^[0-9a-f]{7,64}$/.test(commit)) return url;
  return url.replace(/^([^?#]*?\/resolve\/)[^/]+\//, `$1${commit}/`);
}
