import { setImmediate } from "node:timers";
import { expect, test } from "vitest";
import { EAGER_POLLS, pollUntil } from "../../src/device/pipeline.ts";

test("pollUntil answers at once when already done", async () => {
  expect(await pollUntil(() => true)).toBe(1);
});

test("pollUntil backs off to timers: a long wait polls about once a millisecond, with the loop running", async () => {
  let done = false;
  let ranDuring = false;
  setImmediate(() => (ranDuring = true));
  setTimeout(() => (done = true), 30);
  const t0 = performance.now();
  const polls = await pollUntil(() => done);
  const ms = performance.now() - t0;
  expect(ranDuring).toBe(true);
  expect(polls).toBeGreaterThan(EAGER_POLLS);
  // A busy loop polls thousands of times in 30 ms; timer polls at most about once per elapsed millisecond.
  expect(polls).toBeLessThanOrEqual(EAGER_POLLS + 2 * Math.ceil(ms) + 2);
});

test("pollUntil rejects with what the poll threw", async () => {
  let n = 0;
  await expect(
    pollUntil(() => {
      if (++n === EAGER_POLLS + 3) throw new Error("cudaEventQuery failed");
      return false;
    }),
  ).rejects.toThrow("cudaEventQuery failed");
  expect(n).toBe(EAGER_POLLS + 3);
});
