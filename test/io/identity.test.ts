import { mkdtempSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { open } from "../../src/checkpoint/open.ts";
import { save } from "../../src/format/writer.ts";
import { ACCESSES_PER_CLOCK } from "../../src/io/identity.ts";
import { loadLibc } from "../../src/io/libc.ts";
import { openSource } from "../../src/io/open-source.ts";
import type { Backend } from "../../src/io/source.ts";

const hasFfi = !("unavailable" in (await loadLibc()));
const backends: Backend[] = hasFfi ? ["read", "mmap"] : ["read"];
const dir = mkdtempSync(join(tmpdir(), "tensormap-identity-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two checkpoints of the same size, tensor for tensor, with different bytes: what `cp new old` swaps. */
async function twins(name: string): Promise<{ path: string; replacement: Uint8Array }> {
  const tensors = (fill: number) => ({ a: { dtype: "U8" as const, shape: [5000], data: new Uint8Array(5000).fill(fill) } });
  const path = join(dir, `${name}.safetensors`);
  const other = join(dir, `${name}.other.safetensors`);
  await save(path, tensors(1));
  await save(other, tensors(2));
  const { readFileSync } = await import("node:fs");
  return { path, replacement: readFileSync(other) };
}

/** Lets the synchronous run end, so the next access checks again. */
const nextTurn = () => new Promise((resolve) => setTimeout(resolve, 0));

describe.each(backends)("a file rewritten in place while open, %s backend", (backend) => {
  test("`cp new old` at the same size: the next access is FileChanged, not the new bytes", async () => {
    const { path, replacement } = await twins(`cp-${backend}`);
    using file = await open(path, { backend });
    expect(file.tensor("a").bytes[0]).toBe(1);
    writeFileSync(path, replacement); // what cp does: O_TRUNC, then write, same inode
    expect(statSync(path).size).toBe(replacement.length);
    await nextTurn();
    expect(() => file.tensor("a")).toThrow(expect.objectContaining({ code: "FileChanged", message: expect.stringContaining(path) }));
    // And for good: the file stays refused.
    await nextTurn();
    expect(() => file.tensor("a")).toThrow(expect.objectContaining({ code: "FileChanged" }));
  });

  test("with its modification time put back (cp -p), the change time still tells", async () => {
    const { path, replacement } = await twins(`cp-p-${backend}`);
    // A whole second, which utimes puts back exactly (a Date would lose the nanoseconds, and the change show).
    const second = 1_700_000_000;
    utimesSync(path, second, second);
    using file = await open(path, { backend });
    writeFileSync(path, replacement);
    utimesSync(path, second, second);
    expect(statSync(path, { bigint: true }).mtimeNs).toBe(BigInt(second) * 1_000_000_000n);
    await nextTurn();
    expect(() => file.tensor("a")).toThrow(expect.objectContaining({ code: "FileChanged" }));
  });

  test("read() and readInto() check too", async () => {
    const { path, replacement } = await twins(`read-${backend}`);
    using src = Object.assign(await openSource(path, { backend }), { [Symbol.dispose]() {} });
    writeFileSync(path, replacement);
    await nextTurn();
    await expect(src.read(0, 16, new Uint8Array(16))).rejects.toMatchObject({ code: "FileChanged" });
    expect(() => src.readInto(new Uint8Array(16), 0)).toThrow(expect.objectContaining({ code: "FileChanged" }));
    src.close();
  });

  test(`within one synchronous run, a check runs again once a millisecond has passed (the clock is read every ${ACCESSES_PER_CLOCK} accesses)`, async () => {
    const { path, replacement } = await twins(`sync-${backend}`);
    using file = await open(path, { backend });
    file.tensor("a");
    writeFileSync(path, replacement);
    const until = performance.now() + 2;
    while (performance.now() < until); // no await: the same synchronous run
    let caught: unknown;
    for (let i = 0; i <= ACCESSES_PER_CLOCK && !caught; i++) {
      try {
        file.tensor("a");
      } catch (e) {
        caught = e;
      }
    }
    expect(caught).toMatchObject({ code: "FileChanged" });
  });

  test("a file replaced by a rename is no change: the open file is the old one, whole", async () => {
    const { path, replacement } = await twins(`rename-${backend}`);
    using file = await open(path, { backend });
    writeFileSync(`${path}.tmp`, replacement);
    renameSync(`${path}.tmp`, path);
    await nextTurn();
    expect(file.tensor("a").bytes.every((b) => b === 1)).toBe(true);
  });
});
