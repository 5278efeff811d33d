/** What the kernel says about this process's mappings and the page cache: how tests observe advice for real. */
import { closeSync, fsyncSync, openSync, readFileSync } from "node:fs";
import { loadLibcBinding } from "../../ffi/libc.ts";
import { MAP_SHARED, POSIX_FADV_DONTNEED, PROT_READ } from "../../ffi/types.ts";

/**
 * The `VmFlags` of the mapping starting at `addr` (/proc/self/smaps): `sr` once MADV_SEQUENTIAL applies,
 * `rr` once MADV_RANDOM does.
 *
 * @example
 * ```ts
 * expect(vmFlags(src.pointer(0))).toContain("sr");
 * ```
 */
export function vmFlags(addr: bigint): string[] {
  const lines = readFileSync("/proc/self/smaps", "utf8").split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${addr.toString(16)}-`));
  if (at < 0) throw new Error(`no mapping starts at 0x${addr.toString(16)}`);
  const flags = lines.slice(at + 1).find((l) => l.startsWith("VmFlags:"))!;
  return flags.slice("VmFlags:".length).trim().split(/\s+/);
}

const raw = await loadLibcBinding();
const SYS_MINCORE: Partial<Record<string, number>> = { x64: 27, arm64: 232 };

/**
 * How many of the file's pages are in the page cache (`mincore` over a mapping of it that touches none), or
 * undefined where there is no FFI.
 *
 * @example
 * ```ts
 * evict(path); residentPages(path); // 0
 * ```
 */
export function residentPages(path: string): number | undefined {
  if ("unavailable" in raw || SYS_MINCORE[process.arch] === undefined) return undefined;
  const fd = raw.open(path, 0);
  const size = Number(raw.lseek(fd, 0, 2));
  const pages = Math.ceil(size / 4096);
  const addr = raw.mmap(0n, size, PROT_READ, MAP_SHARED, fd, 0);
  raw.close(fd);
  const vec = new Uint8Array(pages);
  const r = raw.syscall(SYS_MINCORE[process.arch]!, addr, size, raw.address(vec));
  raw.munmap(addr, size);
  if (r !== 0) throw new Error(`mincore: ${raw.strerror(raw.errno())}`);
  return vec.reduce((n, b) => n + (b & 1), 0);
}

/**
 * Drops the file's clean pages from the page cache (written back first), as a cold-cache benchmark does.
 *
 * @example
 * ```ts
 * evict(path);
 * ```
 */
export function evict(path: string): void {
  if ("unavailable" in raw) return;
  const fd = openSync(path, "r+");
  fsyncSync(fd);
  closeSync(fd);
  const rfd = raw.open(path, 0);
  raw.posixFadvise(rfd, 0, 0, POSIX_FADV_DONTNEED);
  raw.close(rfd);
}

/**
 * Bytes this process has had read from storage (`read_bytes` in /proc/self/io), counted as the reads are
 * submitted: what reaches the disk, not what the page cache serves.
 *
 * @example
 * ```ts
 * const before = storageReads(); touchPages(view); storageReads() - before; // 0 when it was all cached
 * ```
 */
export function storageReads(): number {
  return Number(/read_bytes: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))![1]);
}

/**
 * Bytes this process has read through read(2) and its kin (`rchar` in /proc/self/io), from the page cache or not.
 *
 * @example
 * ```ts
 * const before = bytesRead(); src.bytes(0, 8); bytesRead() - before; // 8
 * ```
 */
export function bytesRead(): number {
  return Number(/rchar: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))![1]);
}
