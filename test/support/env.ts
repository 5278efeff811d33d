/** Environment variables set for one test's length. */

/**
 * Sets `vars` in process.env while `run` runs (it may change them further), then puts back what each was, unset included.
 *
 * @example
 * ```ts
 * await withEnv({ HF_TOKEN: "hf_test" }, async () => expect(await digests(await openCheckpoint("hf://o/r"))).toEqual(local));
 * ```
 */
export async function withEnv(vars: Record<string, string>, run: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    await run();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
