/**
 * A mapped file that shrinks under us (`cp new.safetensors model.safetensors` truncates in place) makes every
 * page past its new end raise SIGBUS on the next read, and SIGBUS ends the process. Nothing in JavaScript can
 * catch it, so on x86-64 Linux a small signal handler, written here as machine code into a page of its own,
 * catches it for the ranges registered with it: it maps a zero page over the faulting page, counts the fault
 * against the range, and returns, so the read runs again and sees zeros. The mmap source then refuses further
 * reads with `FileChanged`. Any other SIGBUS goes to the handler that was there before (Bun's crash report,
 * Rust's stack-overflow check), or, with none, ends the process as it would have without us.
 *
 * The handler is `sigbus-guard.x64.s`, assembled; the 8 bytes after it (its label `table`) hold the address of
 * the table it shares with this module.
 */
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, type LibCBinding, type MappingGuard, type SigbusGuard } from "./types.ts";

/** `sigbus-guard.x64.s`, assembled, and the offsets of its labels (the test assembles it again and compares). */
export const X64 = {
  code:
  "837e080275724c8b059c000000488b4610498b48204d8d88800000004885c97457493b017249493b41087343f049ff4110f049ff" +
  "4028575652482500f0ffff4889c7be00100000ba0300000041ba3200000049c7c0ffffffff4531c9b8090000000f055a5e5f483d" +
  "00f0ffff770ac34983c11848ffc9eba44c8b052a000000498b004883f8017602ffe041ba0800000031d24c89c6bf07000000b80d" +
  "0000000f05c3b80f0000000f05",
  restorer: 0xa2,
  table: 0xa9,
};

// The shared table: the previous sigaction (written by the kernel), the slots in use, the faults in all of
// them, our sigaction, then the slots.
const TABLE_BYTES = 1 << 16;
const PREVIOUS_AT = 0;
const IN_USE_AT = 32;
const FAULTS_AT = 40;
const OURS_AT = 64;
const SLOTS_AT = 128;
const SLOT_BYTES = 24;
const SLOTS = Math.floor((TABLE_BYTES - SLOTS_AT) / SLOT_BYTES);

const SIGBUS = 7;
const SA_SIGINFO = 4;
const SA_RESTORER = 0x04000000;
const SA_ONSTACK = 0x08000000;
const SYS_MPROTECT = 10;
const SYS_RT_SIGACTION = 13;
const PROT_EXEC = 4;

const UNGUARDED: MappingGuard = { faulted: () => false, release: () => {} };
const NONE: SigbusGuard = { faults: new Uint32Array(2), guard: () => UNGUARDED };

/**
 * Installs the handler once for this process, where the machine code fits (x86-64 Linux); elsewhere every
 * guard is a no-op and a truncated file still ends the process.
 *
 * @example
 * ```ts
 * const guards = installSigbusGuard(binding);
 * const g = guards.guard(addr, length);
 * if (g.faulted()) throw new Error("the file shrank");
 * ```
 */
export function installSigbusGuard(b: LibCBinding): SigbusGuard {
  if (process.arch !== "x64") return NONE;
  const table = b.mmap(0n, TABLE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (table === -1n) return NONE;
  const code = b.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code === -1n) return NONE;
  const bytes = new Uint8Array(b.view(code, 4096));
  for (let i = 0; i < X64.code.length / 2; i++) bytes[i] = parseInt(X64.code.slice(2 * i, 2 * i + 2), 16);
  new DataView(bytes.buffer).setBigUint64(X64.table, table, true);
  const words = new BigUint64Array(b.view(table, TABLE_BYTES));
  // The fault counts read as two halves: no BigInt allocated per check on the hot path.
  const halves = new Uint32Array(words.buffer);
  words.set([code, BigInt(SA_SIGINFO | SA_RESTORER | SA_ONSTACK), code + BigInt(X64.restorer), 0n], OURS_AT / 8);
  if (
    b.syscall(SYS_MPROTECT, code, 4096, PROT_READ | PROT_EXEC) !== 0 ||
    b.syscall(SYS_RT_SIGACTION, SIGBUS, table + BigInt(OURS_AT), table + BigInt(PREVIOUS_AT), 8) !== 0
  ) {
    return NONE;
  }

  const slot = (i: number) => (SLOTS_AT + i * SLOT_BYTES) / 8;
  const free: number[] = [];
  let inUse = 0;
  return {
    faults: halves.subarray(FAULTS_AT / 4, FAULTS_AT / 4 + 2),
    guard(addr, length) {
      const i = free.pop() ?? (inUse < SLOTS ? inUse++ : -1);
      if (i < 0) return UNGUARDED;
      const at = slot(i);
      // The end goes in last (and comes out first): the handler never sees half a range.
      words[at] = addr;
      words[at + 2] = 0n;
      words[at + 1] = addr + BigInt(length);
      words[IN_USE_AT / 8] = BigInt(inUse);
      let released = false;
      return {
        faulted: () => !released && (halves[2 * at + 4]! | halves[2 * at + 5]!) !== 0,
        release() {
          if (released) return;
          released = true;
          words[at + 1] = 0n;
          words[at] = 0n;
          free.push(i);
        },
      };
    },
  };
}
