/**
 * Places the commit tests write into: folders nothing can be written into, and tmpfs mounts where this
 * process may make them.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Folders nothing can be written into, each with the errnos a write there fails with: a read-only tmpfs
 * mounted at `base/ro` where this process may mount (root: EROFS), a 0555 folder where permissions hold (not
 * root: EACCES), and sysfs's top folder (creating a file there is EACCES, a folder EPERM, for everyone).
 * `release()` unmounts.
 */
export function unwritableFolders(base: string): { folders: Array<{ path: string; codes: string[] }>; release(): void } {
  const folders = [{ path: "/sys", codes: ["EACCES", "EPERM"] }];
  const ro = join(base, "ro");
  mkdirSync(ro);
  const mounted = mountTmpfs(ro, "ro");
  if (mounted) folders.push({ path: ro, codes: ["EROFS"] });
  else if (process.getuid?.() !== 0) {
    chmodSync(ro, 0o555);
    folders.push({ path: ro, codes: ["EACCES"] });
  }
  return { folders, release: () => void (mounted && unmount(ro)) };
}

/** Mounts a small tmpfs on `dir` where this process may (root with CAP_SYS_ADMIN); false elsewhere. */
export function mountTmpfs(dir: string, options: string): boolean {
  return spawnSync("mount", ["-t", "tmpfs", "-o", `${options},size=16m`, "tmpfs", dir]).status === 0;
}

export function unmount(dir: string): void {
  spawnSync("umount", [dir]);
}
