/**
 * Bytes of entries per change notification, about: each stays inside what the change feed sends
 * inline in one NOTIFY (7,000 bytes with its envelope) rather than through a table.
 */
const CHUNK_BYTES = 6_000;

/**
 * Sends entries keyed by an id (`[id, ...counts]`: a rate window's, a user's) in as many parts as
 * keep each one's JSON inside an inline NOTIFY; nothing when there are none.
 */
export function sendInChunks<T extends [string, ...number[]]>(
  entries: Iterable<T>,
  send: (chunk: T[]) => void,
): void {
  let chunk: T[] = [];
  let bytes = 0;
  for (const e of entries) {
    // The entry as JSON: the id quoted, numbers of up to 15 digits, brackets and commas.
    const size = e[0].length + 18 * e.length;
    if (chunk.length > 0 && bytes + size > CHUNK_BYTES) {
      send(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(e);
    bytes += size;
  }
  if (chunk.length > 0) send(chunk);
}
