/**
 * Commits of files (src/io/commit.ts), against real files and real SIGKILLs: a child process of the same
 * runtime is killed in the middle of a write; the file must then be the old one or the new one, whole, and
 * what the dead writer left is removed by the next write into that folder.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { removeStaleTemps, tempName, writeAtomic } from "../../src/io/commit.ts";
import { removeTranspiled, runChild, startChild } from "./child.ts";

const CHILD = fileURLToPath(new URL("./commit-child.ts", import.meta.url));
const base = mkdtempSync(join(tmpdir(), "tensormap-commit-"));
afterAll(() => {
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
const TEMP = /^\..+\.tmp-\d+-\d+-[0-9a-f]{8}-[0-9a-f]{8}$/;
const temps = (dir: string) => readdirSync(dir).filter((name) => TEMP.test(name));


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
      removeStaleTemps(dir);
      expect(readdirSync(dir).sort()).toEqual(keep.map((p) => p.slice(dir.length + 1)).sort());
    } finally {
      sleeper.kill("SIGKILL");
    }
  });
});
