/**
 * The value, or a note of its size and its start when its JSON is over `limit` characters: what a
 * record keeps of something a client chose (messages, tool arguments) stays bounded.
 */
export function capJson(v: unknown, limit: number): unknown {
  const json = JSON.stringify(v) ?? '';
  return json.length <= limit ? v : { truncated: true, length: json.length, head: json.slice(0, limit) };
}
