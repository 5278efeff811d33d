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
 * the table it shares with this module. The ranges live in blocks chained from the table, one more block each
 * time the last is full, so every mapping tensormap makes is guarded, however many are open at once.
 */
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, type LibCBinding, type MappingGuard, type SigbusGuard } from "./types.ts";

/** `sigbus-guard.x64.s`, assembled, and the offsets of its labels (the test assembles it again and compares). */
export const X64 = {
  code:
  "837e0802757d4c8b05a7000000488b46104d8b58204d85db7469498b4b084d8d4b104885c97457493b017249493b41087343f049" +
  "ff4110f049ff4028575652482500f0ffff4889c7be00100000ba0300000041ba3200000049c7c0ffffffff4531c9b8090000000f" +
  "055a5e5f483d00f0ffff770fc34983c11848ffc9eba44d8b1beb924c8b052a000000498b004883f8017602ffe041ba0800000031" +
  "d24c89c6bf07000000b80d0000000f05c3b80f0000000f05",
  restorer: 0xad,
  table: 0xb4,
};

// The shared table: the previous sigaction (written by the kernel), the first block, the faults in all ranges,
// our sigaction. A block: the next block, its slots in use, then the slots (start, end, faults).
const TABLE_BYTES = 4096;
const PREVIOUS_AT = 0;
const FIRST_BLOCK_AT = 32;
const FAULTS_AT = 40;
const OURS_AT = 64;
const BLOCK_BYTES = 1 << 16;
const NEXT_AT = 0;
const IN_USE_AT = 8;
const SLOTS_AT = 16;
const SLOT_BYTES = 24;
/** Slots per block. */
export const BLOCK_SLOTS = Math.floor((BLOCK_BYTES - SLOTS_AT) / SLOT_BYTES);

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
  const tableWords = new BigUint64Array(b.view(table, TABLE_BYTES));
  // The fault counts read as two halves: no BigInt allocated per check on the hot path.
  const halves = new Uint32Array(tableWords.buffer);
  tableWords.set([code, BigInt(SA_SIGINFO | SA_RESTORER | SA_ONSTACK), code + BigInt(X64.restorer), 0n], OURS_AT / 8);
  if (
    b.syscall(SYS_MPROTECT, code, 4096, PROT_READ | PROT_EXEC) !== 0 ||
    b.syscall(SYS_RT_SIGACTION, SIGBUS, table + BigInt(OURS_AT), table + BigInt(PREVIOUS_AT), 8) !== 0
  ) {
    return NONE;
  }

  /** A block's words, and its slots handed out so far (released ones go to `free`). */
  interface Block {
    words: BigUint64Array;
    halves: Uint32Array;
    used: number;
  }
  const blocks: Block[] = [];
  const free: Array<[Block, number]> = [];
  const addBlock = (): Block | undefined => {
    const at = b.mmap(0n, BLOCK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (at === -1n) return undefined;
    const words = new BigUint64Array(b.view(at, BLOCK_BYTES));
    const block = { words, halves: new Uint32Array(words.buffer), used: 0 };
    // Linked last, whole and empty: the handler never sees a block half set up.
    if (blocks.length) blocks.at(-1)!.words[NEXT_AT / 8] = at;
    else tableWords[FIRST_BLOCK_AT / 8] = at;
    blocks.push(block);
    return block;
  };
  const slotAt = (): [Block, number] | undefined => {
    const reused = free.pop();
    if (reused) return reused;
    const last = blocks.at(-1);
    const block = last && last.used < BLOCK_SLOTS ? last : addBlock();
    return block && [block, block.used++];
  };
  return {
    faults: halves.subarray(FAULTS_AT / 4, FAULTS_AT / 4 + 2),
    guard(addr, length) {
      const found = slotAt();
      // Out of memory for another block: this one mapping goes unguarded, as before the guard existed.
      if (!found) return UNGUARDED;
      const [block, i] = found;
      const { words, halves: counts } = block;
      const at = (SLOTS_AT + i * SLOT_BYTES) / 8;
      // The end goes in last (and comes out first): the handler never sees half a range.
      words[at] = addr;
      words[at + 2] = 0n;
      words[at + 1] = addr + BigInt(length);
      // The handler scans the slots in use: a new slot counts once it holds its range.
      words[IN_USE_AT / 8] = BigInt(block.used);
      let released = false;
      return {
        faulted: () => !released && (counts[2 * at + 4]! | counts[2 * at + 5]!) !== 0,
        release() {
          if (released) return;
          released = true;
          words[at + 1] = 0n;
          words[at] = 0n;
          free.push([block, i]);
        },
      };
    },
  };
}
