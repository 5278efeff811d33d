/**
 * Detaches an ArrayBuffer, where the runtime lets it: its views become empty (length 0), so no read through
 * them can reach its memory again. True once it is detached; false when the runtime keeps it attached (Bun
 * does while an asynchronous call holds the buffer).
 *
 * @example
 * ```ts
 * const buffer = new ArrayBuffer(8);
 * const view = new Uint8Array(buffer);
 * detach(buffer); // true
 * view.length; // 0
 * ```
 */
export function detach(buffer: ArrayBuffer): boolean {
  try {
    // To a new, empty buffer: nothing is copied.
    buffer.transfer(0);
  } catch {
    // Not detachable (a runtime's own buffer): it stays as it is.
  }
  return buffer.detached;
}
