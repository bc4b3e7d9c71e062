/**
 * 52 bits of a string's hash (two 32-bit FNV-1a over its UTF-16 units, with different offsets),
 * exact in a double. For columns whose values a member chooses freely (session ids, model names):
 * interned, each new value was kept for good, 820 bytes a record with fresh ones against 99
 * (docs/security.md). A match on the hash alone may, once in 2^52, be another value: callers check
 * the record they load.
 */
export function valueKey(s: string): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 13);
  }
  return (a >>> 0) * 0x100000 + ((b >>> 0) & 0xfffff);
}
