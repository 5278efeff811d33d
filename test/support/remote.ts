/** What the remote tests (and others) ask of a checkpoint: the error a call fails with, and a digest of every tensor. */
import type { Checkpoint } from "../../src/checkpoint/checkpoint.ts";
import { openCheckpoint } from "../../src/checkpoint/open.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { sha256 } from "./fixtures.ts";

/**
 * The SafetensorsError `f` fails with; anything else, or no failure, fails the test.
 *
 * @example
 * ```ts
 * expect((await failure(() => open("s3://b/missing.safetensors"))).code).toBe("RemoteError");
 * ```
 */
export async function failure(f: () => unknown): Promise<SafetensorsError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof SafetensorsError) return e;
    throw e;
  }
  throw new Error("did not fail");
}

/**
 * sha256 of every tensor by name, fetched first (a remote checkpoint holds only its headers until then).
 *
 * @example
 * ```ts
 * expect(await digests(remote)).toEqual(await localDigests(fixture("sharded")));
 * ```
 */
export async function digests(model: Checkpoint): Promise<Map<string, string>> {
  await model.prefetch();
  return new Map(model.keys().map((n) => [n, sha256(model.tensor(n).bytes)]));
}

/**
 * {@link digests} of a local checkpoint, read without mapping.
 *
 * @example
 * ```ts
 * const local = await localDigests(fixture("safetensors/tiny-gpt2.safetensors"));
 * ```
 */
export async function localDigests(path: string): Promise<Map<string, string>> {
  using model = await openCheckpoint(path, { backend: "read" });
  return await digests(model);
}
