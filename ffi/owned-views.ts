/**
 * Views that own their mapping, for runtimes whose zero-copy view has no free hook (Deno, Node): a registry
 * unmaps a view's memory once the view is collected, and `releaseView` detaches it and unmaps at once.
 */
import { detach } from "./detach.ts";

/** The two `LibCBinding` members built on a runtime's plain view and its `munmap`. */
export interface OwnedViews {
  viewOwningMapping(addr: bigint, length: number): ArrayBuffer;
  releaseView(buffer: ArrayBuffer): boolean;
}

/**
 * Builds {@link OwnedViews} from a zero-copy view and an unmap.
 *
 * @example
 * ```ts
 * const { viewOwningMapping, releaseView } = ownedViews(view, (addr, length) => c.munmap(addr, length));
 * ```
 */
export function ownedViews(view: (addr: bigint, length: number) => ArrayBuffer, munmap: (addr: bigint, length: number) => unknown): OwnedViews {
  const unmapper = new FinalizationRegistry<[bigint, number]>(([addr, length]) => munmap(addr, length));
  const mappings = new WeakMap<ArrayBuffer, [bigint, number]>();
  return {
    viewOwningMapping(addr, length) {
      const buffer = view(addr, length);
      unmapper.register(buffer, [addr, length], buffer);
      mappings.set(buffer, [addr, length]);
      return buffer;
    },
    releaseView(buffer) {
      const range = mappings.get(buffer);
      if (!range || !detach(buffer)) return false;
      // Detached, nothing in JavaScript reaches the memory: unmapped now, and never again by the registry.
      unmapper.unregister(buffer);
      mappings.delete(buffer);
      munmap(...range);
      return true;
    },
  };
}
