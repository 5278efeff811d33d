/**
 * A safetensors file of one U8 tensor `big` of `bytes` bytes (shaped `shape`, one dimension by default), the bytes
 * a pattern of their offsets (so a part landing in the wrong place shows).
 */
export function bigFile(bytes: number, shape: number[] = [bytes]): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ big: { dtype: "U8", shape, data_offsets: [0, bytes] } }).padEnd(88));
  const out = new Uint8Array(8 + header.length + bytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  const data = out.subarray(8 + header.length);
  for (let i = 0; i < bytes; i++) data[i] = Math.imul(i, 0x9e3779b1) >>> 24;
  return out;
}
