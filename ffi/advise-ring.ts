/**
 * `madvise` on a kernel worker thread, through io_uring (`IORING_OP_MADVISE`, Linux 5.6+): the one way to run
 * a system call off the JavaScript thread that Bun and Deno share, with no Worker to start. `MADV_POPULATE_READ`
 * sent here maps a file's pages (reading them from disk first when they are cold) while JavaScript goes on
 * parsing the header or touching the pages already mapped.
 *
 * One small ring per process, set up on first use and kept; completions are collected by an unreferenced timer
 * while requests are in flight. Runtime-agnostic: it needs only `syscall`, `mmap` and views from the binding.
 */
import { setInterval } from "node:timers";
import { MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, type LibCBinding } from "./types.ts";

const SYS_IO_URING_SETUP = 425; // the same number on every architecture (the generic syscall table)
const SYS_IO_URING_ENTER = 426;
const IORING_FEAT_SINGLE_MMAP = 1;
const IORING_OFF_SQES = 0x10000000;
const IORING_OP_MADVISE = 25;
const IOSQE_IO_LINK = 1 << 2;
const EAGAIN = 11;
const POLL_MS = 1;

/** Runs `madvise` calls on the kernel's io_uring workers. */
export interface AdviseRing {
  /**
   * `madvise(addr, length, advice)` on a kernel thread, in pieces run one after the other (linked), so a cold
   * file is read front to back. Resolves once they are over, to 0 or the errno of the first piece that failed
   * (or of the kernel's refusal to take them). Calls beyond the ring's room wait for it, in order.
   */
  madvise(addr: bigint, length: number, advice: number): Promise<number>;
}

export interface AdviseRingOptions {
  /** Submission queue entries: how many pieces run at once. */
  entries?: number;
  /** The longest piece in bytes (`sqe.len` is 32 bits wide: at most 1 GiB, the default). */
  piece?: number;
}

// struct io_uring_params: 10 u32 fields, then io_sqring_offsets and io_cqring_offsets (40 bytes each).
const P_SQ_ENTRIES = 0;
const P_CQ_ENTRIES = 4;
const P_FEATURES = 20;
const SQ_OFF = 40;
const CQ_OFF = 80;
const PARAMS_BYTES = 120;

/**
 * Sets up the ring, or returns why it cannot (no io_uring in this kernel, or a sandbox that forbids it).
 *
 * @example
 * ```ts
 * const ring = createAdviseRing(bindLibc());
 * if (!("unavailable" in ring)) await ring.madvise(addr, length, MADV_POPULATE_READ);
 * ```
 */
export function createAdviseRing(
  b: LibCBinding,
  { entries = 32, piece = 2 ** 30 }: AdviseRingOptions = {},
): AdviseRing | { unavailable: string } {
  const anon = b.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (anon === -1n) return { unavailable: `mmap: ${b.strerror(b.errno())}` };
  const params = new DataView(b.view(anon, PARAMS_BYTES));
  const fd = b.syscall(SYS_IO_URING_SETUP, entries, anon);
  const errno = fd < 0 ? b.errno() : 0;
  const sqEntries = params.getUint32(P_SQ_ENTRIES, true);
  const cqEntries = params.getUint32(P_CQ_ENTRIES, true);
  const features = params.getUint32(P_FEATURES, true);
  const off = (at: number) => params.getUint32(at, true);
  // Where each field sits in the ring (the masks are values stored there, read once it is mapped).
  const sq = { tail: off(SQ_OFF + 4), maskAt: off(SQ_OFF + 8), array: off(SQ_OFF + 24) };
  const cq = { head: off(CQ_OFF), tail: off(CQ_OFF + 4), maskAt: off(CQ_OFF + 8), cqes: off(CQ_OFF + 20) };
  b.munmap(anon, 4096);
  if (fd < 0) return { unavailable: `io_uring_setup: ${b.strerror(errno)}` };
  if (!(features & IORING_FEAT_SINGLE_MMAP)) {
    b.close(fd);
    return { unavailable: "io_uring without IORING_FEAT_SINGLE_MMAP (Linux < 5.4)" };
  }
  const ringBytes = Math.max(sq.array + 4 * sqEntries, cq.cqes + 16 * cqEntries);
  // The kernel's own ring pages, mapped for the life of the process.
  const shared = [PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd] as const;
  const ringAddr = b.mmap(0n, ringBytes, ...shared, 0);
  const sqeAddr = ringAddr === -1n ? -1n : b.mmap(0n, 64 * sqEntries, ...shared, IORING_OFF_SQES);
  if (sqeAddr === -1n) {
    const why = b.strerror(b.errno());
    if (ringAddr !== -1n) b.munmap(ringAddr, ringBytes);
    b.close(fd);
    return { unavailable: `cannot map the io_uring: ${why}` };
  }
  const ring = new DataView(b.view(ringAddr, ringBytes));
  const sqMask = ring.getUint32(sq.maskAt, true);
  const cqMask = ring.getUint32(cq.maskAt, true);
  const sqes = new DataView(b.view(sqeAddr, 64 * sqEntries));
  const sqes8 = new Uint8Array(sqes.buffer);

  /** A call: its range, how far it is submitted, the pieces of it in flight, and its first errno. */
  interface Call {
    id: number;
    addr: bigint;
    end: number;
    advice: number;
    next: number;
    running: number;
    failed: number;
    resolve(errno: number): void;
  }
  // Calls in arrival order (a handful at most); each runs one linked chain at a time, so its pieces stay in order.
  const calls: Call[] = [];
  const capacity = Math.min(sqEntries, cqEntries);
  let inFlight = 0;
  let nextId = 1;
  let poller: ReturnType<typeof setInterval> | undefined;

  const settle = (call: Call, errno: number) => {
    calls.splice(calls.indexOf(call), 1);
    call.resolve(errno);
  };

  /** Submits the next chain of every idle call, in order, while the ring has room. */
  const pump = () => {
    for (const call of [...calls]) {
      const room = capacity - inFlight;
      if (room === 0) break;
      if (call.running > 0) continue;
      const n = Math.min(room, Math.max(1, Math.ceil((call.end - call.next) / piece)));
      const first = ring.getUint32(sq.tail, true);
      for (let i = 0; i < n; i++) {
        const slot = (first + i) & sqMask;
        const at = 64 * slot;
        const from = call.next + i * piece;
        sqes8.fill(0, at, at + 64);
        sqes.setUint8(at, IORING_OP_MADVISE);
        sqes.setUint8(at + 1, i < n - 1 ? IOSQE_IO_LINK : 0);
        sqes.setInt32(at + 4, -1, true);
        sqes.setBigUint64(at + 16, call.addr + BigInt(from), true);
        sqes.setUint32(at + 24, Math.min(piece, call.end - from), true);
        sqes.setUint32(at + 28, call.advice, true);
        sqes.setBigUint64(at + 32, BigInt(call.id), true);
        ring.setUint32(sq.array + 4 * slot, slot, true);
      }
      // The kernel reads the tail inside io_uring_enter (no SQPOLL thread): the system call orders these stores.
      ring.setUint32(sq.tail, (first + n) >>> 0, true);
      const taken = b.syscall(SYS_IO_URING_ENTER, fd, n, 0, 0, 0, 0);
      const submitted = Math.max(0, taken);
      // Entries the kernel did not take are withdrawn; they go in a later chain.
      if (submitted < n) ring.setUint32(sq.tail, (first + submitted) >>> 0, true);
      if (submitted === 0) {
        // Refused: the next completion retries, or, with nothing running, the call fails with the kernel's reason.
        if (inFlight > 0) break;
        settle(call, taken < 0 ? b.errno() : EAGAIN);
        continue;
      }
      inFlight += submitted;
      call.running = submitted;
      call.next = Math.min(call.end, call.next + submitted * piece);
    }
    if (inFlight > 0) {
      poller ??= setInterval(reap, POLL_MS);
      poller.unref();
    }
  };

  const reap = () => {
    let head = ring.getUint32(cq.head, true);
    const tail = ring.getUint32(cq.tail, true);
    for (; head !== tail; head = (head + 1) >>> 0) {
      const at = cq.cqes + 16 * (head & cqMask);
      const id = Number(ring.getBigUint64(at, true));
      const call = calls.find((c) => c.id === id);
      const res = ring.getInt32(at + 8, true);
      inFlight--;
      if (!call) continue;
      if (res < 0 && call.failed === 0) call.failed = -res;
      // A failed piece cancels the rest of its chain; the pieces not yet submitted are dropped.
      if (--call.running === 0 && (call.failed !== 0 || call.next === call.end)) settle(call, call.failed);
    }
    ring.setUint32(cq.head, head, true);
    pump();
    if (inFlight === 0 && poller) {
      clearInterval(poller);
      poller = undefined;
    }
  };

  return {
    madvise(addr, length, advice) {
      return new Promise<number>((resolve) => {
        const call = { id: nextId++, addr, end: length, advice, next: 0, running: 0, failed: 0, resolve };
        calls.push(call);
        pump();
      });
    },
  };
}
