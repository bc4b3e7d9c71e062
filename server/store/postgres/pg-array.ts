/** A character that, inside a quoted element, JSON.stringify would write otherwise than PostgreSQL reads it. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const NOT_AS_JSON = /[\u0000-\u001f\ud800-\udfff]/;

/**
 * A one-dimensional array parameter as PostgreSQL's array literal: the exact text node-postgres
 * sends for the same array (`prepareValue`: every element quoted, `"` and `\` escaped, null and
 * undefined as NULL), built without its two regular-expression passes per element. A batch of
 * records sends some fourteen such arrays, and the driver's escaping was 6 µs a record; a record's
 * stored JSON, quotes throughout, is escaped by native JSON.stringify, which escapes exactly those
 * two characters when the text holds no control character or surrogate
 * (test/store/pg-array.test.ts compares it with the driver's on generated arrays).
 */
export function pgArray(values: readonly (string | number | boolean | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    out += v === null || v === undefined ? 'NULL' : quoted(typeof v === 'string' ? v : String(v));
  }
  return `${out}}`;
}

function quoted(s: string): string {
  if (!s.includes('"') && !s.includes('\\')) return `"${s}"`;
  if (!NOT_AS_JSON.test(s)) return JSON.stringify(s);
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
