/**
 * Commits of files and folders (src/io/commit.ts), against real files and real SIGKILLs: a child process of
 * the same runtime is killed in the middle of a write, at every step of a folder's commit, and the folder
 * must then hold the old checkpoint or the new one, byte for byte; what the dead writer left is removed by
 * the next write into that folder.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { loadLibc } from "../../src/io/libc.ts";
import { SafetensorsError } from "../../src/errors.ts";
import { discard, recoverFolder, removeStaleTemps, tempName, writeAtomic, writeFolder } from "../../src/io/commit.ts";
import { removeTranspiled, runChild, startChild } from "./child.ts";
import { build, expected, mountTmpfs, NEW, NEW_FILES, OLD, replaces, snapshot, unmount, unwritableFolders, writeNew } from "./commit-fixture.ts";

const CHILD = fileURLToPath(new URL("./commit-child.ts", import.meta.url));

const libc = await loadLibc();
/** Whether this runtime can swap two folders in one step (renameat2 through FFI); Node cannot. */
const canExchange = !("unavailable" in libc) && typeof (libc as { renameExchange?: unknown }).renameExchange === "function";
const SWAPS = canExchange ? (["exchange", "rename"] as const) : (["rename"] as const);

// Mounted last at the top level, right before the hook that unmounts: nothing after it can fail collection.
const base = mkdtempSync(join(tmpdir(), "tensormap-commit-"));
const unwritable = unwritableFolders(base);
afterAll(() => {
  unwritable.release();
  rmSync(base, { recursive: true, force: true });
  removeTranspiled();
});

let n = 0;
/** A fresh folder to write in. */
const fresh = () => {
  const dir = join(base, `case-${n++}`);
  mkdirSync(dir);
  return dir;
};

/** Names our writers give temporary files and folders. */
const TEMP = /^\..+\.(tmp|old)-\d+-\d+-[0-9a-f]{8}-[0-9a-f]{8}$/;
const temps = (dir: string) => readdirSync(dir).filter((name) => TEMP.test(name));

const error = async (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

/** Snapshot lines without modes: for a folder that is new, where the umask decides them. */
const contentOnly = (lines: string[]) => lines.map((l) => l.replace(/ (dir|file) [0-7]+/, " $1"));

describe("temporary files", () => {
  test("are named for their writer: .NAME.tmp-PID-START-HOST-RANDOM beside the target", () => {
    const name = tempName("/data/out/model.safetensors");
    expect(name).toMatch(new RegExp(`^/data/out/\\.model\\.safetensors\\.tmp-${process.pid}-\\d+-[0-9a-f]{8}-[0-9a-f]{8}$`));
    expect(tempName("/data/out/model.safetensors")).not.toBe(name);
  });

  test("a save SIGKILLed halfway leaves its temp file, and the next write into the folder removes it", async () => {
    const dir = fresh();
    const target = join(dir, "model.safetensors");
    writeFileSync(target, "the old file");
    const r = await runChild(CHILD, ["file-half", target]);
    expect(r.signal).toBe("SIGKILL");
    const left = temps(dir);
    expect(left).toHaveLength(1);
    expect(statSync(join(dir, left[0]!)).size).toBe(1 << 20);
    expect(readFileSync(target, "utf8")).toBe("the old file");
    writeAtomic(join(dir, "other.bin"), [new Uint8Array([1])]);
    expect(readdirSync(dir).sort()).toEqual(["model.safetensors", "other.bin"]);
    expect(readFileSync(target, "utf8")).toBe("the old file");
  });

  test("a save SIGKILLed from outside while it writes: the file is old or whole, and the next write tidies", async () => {
    const dir = fresh();
    const target = join(dir, "model.safetensors");
    const child = await startChild(CHILD, ["file-loop", target]);
    const exited = new Promise((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
    // Wait until a temp file of the child's is there, being written, then kill it.
    while (!temps(dir).length) await new Promise((resolve) => setTimeout(resolve, 1));
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    if (existsSync(target)) expect(statSync(target).size).toBe(64 << 20);
    writeAtomic(join(dir, "other.bin"), [new Uint8Array([1])]);
    expect(temps(dir)).toEqual([]);
  });

  test.each(unwritable.folders.map((f) => [f.path] as const))("discard never throws, even where nothing can be removed (%s)", (dir) => {
    expect(() => discard(join(dir, ".m.safetensors.tmp-1-2-00000000-00000000"))).not.toThrow();
    expect(() => discard(join(dir, "missing", "deeper"))).not.toThrow();
  });

  test("only dead writers' temps go: this process's stay, a running process's stay, another host's stay; a reused process id's go", async () => {
    const dir = fresh();
    const ours = tempName(join(dir, "a"));
    const [pid, start, host] = /tmp-(\d+)-(\d+)-([0-9a-f]{8})-/.exec(ours)!.slice(1) as [string, string, string];
    expect(Number(pid)).toBe(process.pid);
    const sleeper = spawn("sleep", ["600"]);
    const done = spawnSync("true");
    try {
      const sleeperStart = readFileSync(`/proc/${sleeper.pid}/stat`, "latin1").split(") ")[1]!.split(" ")[19]!;
      const name = (p: number | string, s: string, h = host) => `.a.tmp-${p}-${s}-${h}-0123abcd`;
      const keep = [ours, join(dir, name(sleeper.pid!, sleeperStart)), join(dir, name(done.pid, "5", "00000000"))];
      const gone = [
        join(dir, name(sleeper.pid!, String(Number(sleeperStart) + 1))), // the same id, another process
        join(dir, name(process.pid, String(Number(start) + 1))),
        join(dir, name(done.pid, "5")),
      ];
      for (const p of [...keep, ...gone]) writeFileSync(p, "x");
      // A dead writer's staging folder goes whole.
      const folder = join(dir, `.out.tmp-${done.pid}-7-${host}-0123abcd`);
      mkdirSync(join(folder, "sub"), { recursive: true });
      writeFileSync(join(folder, "sub", "shard"), "x");
      removeStaleTemps(dir);
      expect(readdirSync(dir).sort()).toEqual(keep.map((p) => p.slice(dir.length + 1)).sort());
    } finally {
      sleeper.kill("SIGKILL");
    }
  });
});

describe("writeFolder", () => {
  test.each(SWAPS)("replaces the checkpoint and keeps the user's files, as hard links (%s)", async (swap) => {
    const parent = fresh();
    const out = join(parent, "out");
    build(out, OLD);
    const readme = lstatSync(join(out, "README.md")).ino;
    const steps: string[] = [];
    await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces, { exchange: swap === "exchange", onStep: (s) => steps.push(s) });
    expect(snapshot(out)).toEqual(expected(NEW));
    expect(lstatSync(join(out, "README.md")).ino).toBe(readme);
    expect(readdirSync(parent)).toEqual(["out"]);
    expect(steps).toContain(swap === "exchange" ? "exchanged" : "moved in");
  });

  test("a new folder is made by one rename, in a parent made as needed", async () => {
    const out = join(fresh(), "a", "out");
    const steps: string[] = [];
    await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces, { onStep: (s) => steps.push(s) });
    expect(contentOnly(snapshot(out))).toEqual(contentOnly(expected(NEW_FILES)));
    expect(steps.slice(-2)).toEqual(["synced", "renamed"]);
  });

  test("a new folder whose write fails leaves neither it nor the parents it made", async () => {
    const parent = fresh();
    const e = await error(writeFolder(join(parent, "a", "b", "out"), () => { throw new SafetensorsError("ENOSPC", "injected: no space left"); }, replaces));
    expect((e as SafetensorsError).code).toBe("ENOSPC");
    expect(readdirSync(parent)).toEqual([]);
  });

  test("a symlink to a folder: the folder it names is replaced, the link stays", async () => {
    const parent = fresh();
    build(join(parent, "real"), OLD);
    symlinkSync("real", join(parent, "out"));
    await writeFolder(join(parent, "out"), (staging) => writeNew(staging, () => {}), replaces);
    expect(lstatSync(join(parent, "out")).isSymbolicLink()).toBe(true);
    expect(snapshot(join(parent, "real"))).toEqual(expected(NEW));
  });

  test("the folder this process works in is written in place, so the process is not left in a removed folder", async () => {
    const out = join(fresh(), "out");
    build(out, OLD);
    const before = process.cwd();
    process.chdir(join(out, "sub"));
    try {
      await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces);
      expect(readdirSync("..").sort()).toEqual(readdirSync(out).sort());
      expect(snapshot(out)).toEqual(expected(NEW));
    } finally {
      process.chdir(before);
    }
  });

  test("a file where the folder should be: ENOTDIR, nothing written", async () => {
    const parent = fresh();
    writeFileSync(join(parent, "out"), "x");
    const e = await error(writeFolder(join(parent, "out"), (staging) => writeNew(staging, () => {}), replaces));
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as SafetensorsError).code).toBe("ENOTDIR");
    expect(readdirSync(parent)).toEqual(["out"]);
  });

  test.each(unwritable.folders.map((f) => [f.path, f.codes] as const))("into unwritable %s: %j, as a SafetensorsError", async (dir, codes) => {
    const e = await error(writeFolder(join(dir, "out"), (staging) => writeNew(staging, () => {}), replaces));
    expect(e).toBeInstanceOf(SafetensorsError);
    expect(codes).toContain((e as SafetensorsError).code);
    expect((e as SafetensorsError).message).not.toMatch(/\n/);
  });
});

describe("writeFolder where the folder cannot be swapped", () => {
  // A mount point (a container's volume) cannot be renamed: the commit goes entry by entry inside it.
  const probe = join(base, "probe");
  mkdirSync(probe);
  const canMount = mountTmpfs(probe, "rw");
  if (canMount) unmount(probe);

  test.skipIf(!canMount)("a mount point is written in place; what the mount holds stays", async () => {
    const out = join(fresh(), "out");
    mkdirSync(out);
    expect(mountTmpfs(out, "rw,mode=750")).toBe(true);
    try {
      build(out, OLD);
      await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces);
      expect(snapshot(out)).toEqual(expected(NEW));
    } finally {
      unmount(out);
    }
  });

  test.skipIf(!canMount)("a mount point inside the folder: written in place, and nothing under the mount is removed", async () => {
    const out = join(fresh(), "out");
    build(out, OLD);
    const inner = join(out, "sub", "deeper");
    expect(mountTmpfs(inner, "rw,mode=755")).toBe(true);
    try {
      writeFileSync(join(inner, "x.bin"), (OLD.find(([p]) => p === "sub/deeper/x.bin")![1] as { bytes: Uint8Array }).bytes);
      chmodSync(join(inner, "x.bin"), 0o644);
      await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces);
      expect(snapshot(out)).toEqual(expected(NEW));
    } finally {
      unmount(inner);
    }
  });
});

/** The events of one whole write (the child run to its end), and the index of the one after which the new folder is in. */
async function dryRun(swap: string, withOld: boolean): Promise<{ events: string[]; swapAt: number }> {
  const out = join(fresh(), "out");
  if (withOld) build(out, OLD);
  const r = await runChild(CHILD, ["folder", out, "-1", swap]);
  expect(r.stderr).toBe("");
  const { events } = JSON.parse(r.stdout.trim()) as { events: string[] };
  const swapAt = events.findIndex((e) => ["exchanged", "moved in", "renamed"].includes(e));
  expect(swapAt).toBeGreaterThan(0);
  return { events, swapAt };
}

describe.each(SWAPS)("writeFolder SIGKILLed at every step (%s)", (swap) => {
  test.each([true, false])("over an old checkpoint: %s; the folder is the old one or the new one, whole", async (withOld) => {
    const { events, swapAt } = await dryRun(swap, withOld);
    // Steps of the commit and of the writing, at least: every file half and whole, every link, the swap.
    expect(events.length).toBeGreaterThan(withOld ? 15 : 10);
    for (let k = 0; k < events.length; k++) {
      const at = `killed after ${JSON.stringify(events[k])} (event ${k})`;
      const parent = fresh();
      const out = join(parent, "out");
      if (withOld) build(out, OLD);
      const r = await runChild(CHILD, ["folder", out, String(k), swap]);
      expect(r.signal, at).toBe("SIGKILL");
      const wantNew = k >= swapAt;
      const want = wantNew ? expected(NEW) : withOld ? expected(OLD) : undefined;
      // Half the cases open the folder first (recoverFolder, what an open does), half only write beside it.
      if (k % 2 === 0) {
        recoverFolder(out);
        if (want) expect(withOld ? snapshot(out) : contentOnly(snapshot(out)), at).toEqual(withOld ? want : contentOnly(expected(NEW_FILES)));
        else expect(existsSync(out), at).toBe(false);
      }
      writeAtomic(join(parent, "other.bin"), [new Uint8Array([1])]);
      expect(readdirSync(parent).sort(), at).toEqual(want ? ["other.bin", "out"] : ["other.bin"]);
      if (want) expect(withOld ? snapshot(out) : contentOnly(snapshot(out)), at).toEqual(withOld ? want : contentOnly(expected(NEW_FILES)));
    }
  }, 120_000);
});

/** A folder whose writer was SIGKILLed between moving it aside and moving the new one in. */
async function killedBetweenRenames(): Promise<{ parent: string; out: string }> {
  const { events } = await dryRun("rename", true);
  const parent = fresh();
  const out = join(parent, "out");
  build(out, OLD);
  const r = await runChild(CHILD, ["folder", out, String(events.indexOf("moved aside")), "rename"]);
  expect(r.signal).toBe("SIGKILL");
  return { parent, out };
}

test("killed between its two renames, the folder is missing until recoverFolder puts the old one back", async () => {
  const { out } = await killedBetweenRenames();
  expect(existsSync(out)).toBe(false);
  expect(recoverFolder(out)).toBe(true);
  expect(snapshot(out)).toEqual(expected(OLD));
  expect(recoverFolder(out)).toBe(false);
});

test("killed between its two renames, the next writeFolder puts the old folder back and replaces it", async () => {
  const { parent, out } = await killedBetweenRenames();
  await writeFolder(out, (staging) => writeNew(staging, () => {}), replaces);
  expect(snapshot(out)).toEqual(expected(NEW));
  expect(readdirSync(parent)).toEqual(["out"]);
});

describe.each(SWAPS)("writeFolder with an I/O error at every step (%s)", (swap) => {
  test("before the swap: the error, as it was thrown, and the old checkpoint untouched, nothing left over; after it: the new one", async () => {
    const events: string[] = [];
    const dry = join(fresh(), "out");
    build(dry, OLD);
    await writeFolder(dry, (staging) => writeNew(staging, (e) => events.push(e)), replaces, { onStep: (e) => events.push(e), exchange: swap === "exchange" });
    const swapAt = events.findIndex((e) => e === "exchanged" || e === "moved in" || e === "renamed");
    for (let k = 0; k < events.length; k++) {
      const at = `failing after ${JSON.stringify(events[k])}`;
      const parent = fresh();
      const out = join(parent, "out");
      build(out, OLD);
      let seen = 0;
      const event = () => {
        if (seen++ === k) throw new SafetensorsError("EIO", "injected: input/output error");
      };
      const e = await error(writeFolder(out, (staging) => writeNew(staging, event), replaces, { onStep: event, exchange: swap === "exchange" }));
      if (k < swapAt) {
        expect((e as SafetensorsError | undefined)?.code, at).toBe("EIO");
        expect(snapshot(out), at).toEqual(expected(OLD));
        expect(readdirSync(parent), at).toEqual(["out"]);
      } else {
        expect(e, at).toBeUndefined();
        expect(snapshot(out), at).toEqual(expected(NEW));
        writeAtomic(join(parent, "other.bin"), [new Uint8Array([1])]);
        expect(readdirSync(parent).sort(), at).toEqual(["other.bin", "out"]);
      }
    }
  }, 60_000);
});
