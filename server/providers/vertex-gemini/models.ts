/** A stable version suffix Vertex may name a Gemini model with: `-001`, or `@001` as Model Garden spells it. */
const VERSION = /[-@]\d{3}$/;

/**
 * The Gemini model a Vertex model id is recorded and priced as (the price data's `google`
 * entries): `gemini-2.0-flash-001` and `gemini-2.0-flash@001` → `gemini-2.0-flash`. A name
 * without a version suffix (`gemini-2.5-pro`, `gemini-3-pro-preview`) is kept as it is.
 */
export function geminiModelOf(id: string): string {
  let name = id;
  try {
    name = decodeURIComponent(id);
  } catch {
    // Not percent-encoded as a path segment should be: the name as sent.
  }
  return name.replace(VERSION, '');
}
