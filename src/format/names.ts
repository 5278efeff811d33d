/**
 * Tensor names sort the way the reference sorts Rust strings: by UTF-8 bytes, which is code-point order.
 * JavaScript's default sort compares UTF-16 units and disagrees above U+FFFF.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Only surrogates (0xD800–0xDFFF) sort differently; lift them above the rest of the BMP.
    const rank = (c: number) => (c >= 0xd800 && c <= 0xdfff ? c + 0x10000 : c);
    return rank(x) - rank(y);
  }
  return a.length - b.length;
}
