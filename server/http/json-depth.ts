import { BridgeError } from '../errors';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/**
 * Values and elements, and object keys, a body may hold per object or array it may hold
 * (assertJsonDepth): a key costs a parse some 25 times what an element of an array does.
 */
export const VALUES_PER_CONTAINER = 4;
export const KEYS_PER_CONTAINER = 2;

/** Bytes of a string scanned one by one before the rest is searched natively (most keys are shorter). */
const SHORT_STRING = 32;

/**
 * The deepest nesting of objects and arrays in JSON text, read in one pass over the bytes without
 * recursion (a hostile body cannot overflow the stack here). Brackets inside strings do not count;
 * UTF-8 continuation bytes are never ASCII, so scanning bytes is exact. Not a validator: it stops
 * as soon as `limit` is passed and returns `limit + 1`.
 *
 * Agents' bodies are mostly long strings (code, tool results): past its first bytes a string's end
 * is found with the buffer's native `indexOf`, a quote being escaped when an odd run of backslashes
 * precedes it. On a 60 KB Claude Code body that is several times faster than a byte-by-byte loop.
 */
export function jsonDepth(raw: Uint8Array, limit = Number.POSITIVE_INFINITY): number {
  return jsonShape(raw, limit).depth;
}

/**
 * The deepest nesting and the number of objects and arrays, in the same pass as `jsonDepth`; it
 * stops once either passes its limit (that count is then `limit + 1`). `values`: the separators
 * between keys and elements plus the containers, a bound on the values a parse makes (strings are
 * skipped whole, so long text costs nothing here); it stops past `valueLimit` too. `duplicate`: a
 * key the top-level object names twice (the first found), as its text decodes.
 */
export function jsonShape(
  raw: Uint8Array,
  depthLimit = Number.POSITIVE_INFINITY,
  containerLimit = Number.POSITIVE_INFINITY,
  valueLimit = Number.POSITIVE_INFINITY,
  keyLimit = Number.POSITIVE_INFINITY,
): { depth: number; containers: number; values: number; keys: number; duplicate?: string } {
  const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = buf.length;
  let depth = 0;
  let deepest = 0;
  let containers = 0;
  let commas = 0;
  let colons = 0;
  // The top-level object's keys: a string at depth 1 right after its `{` or a `,` is one.
  let rootIsObject = false;
  let keyNext = false;
  let keys: Set<string> | undefined;
  let duplicate: string | undefined;
  for (let i = 0; i < n; i++) {
    const b = buf[i];
    if (b === QUOTE) {
      const end = stringEnd(buf, i + 1);
      if (end < 0) break;
      if (keyNext && depth === 1) {
        keyNext = false;
        const key = keyText(buf, i, end);
        keys ??= new Set();
        if (keys.has(key)) duplicate ??= key;
        else keys.add(key);
      }
      i = end;
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (containers === 0 && b === OPEN_BRACE) rootIsObject = true;
      depth++;
      if (depth === 1) keyNext = rootIsObject;
      if (++containers > containerLimit) break;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > depthLimit) break;
      }
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
    else if (b === COMMA) {
      if (depth === 1 && rootIsObject) keyNext = true;
      if (++commas + containers > valueLimit) break;
    } else if (b === COLON && ++colons > keyLimit) break;
  }
  const values = commas + containers;
  return duplicate === undefined
    ? { depth: deepest, containers, values, keys: colons }
    : { depth: deepest, containers, values, keys: colons, duplicate };
}

/** A key's text as JSON decodes it (`"mod\u0065l"` is `model`): `open` and `end` are its quotes. */
function keyText(buf: Buffer, open: number, end: number): string {
  const text = buf.toString('utf8', open + 1, end);
  if (!text.includes('\\')) return text;
  try {
    return JSON.parse(buf.toString('utf8', open, end + 1)) as string;
  } catch {
    // Not valid JSON: the parse that follows refuses the body.
    return text;
  }
}

/** The index of the quote that ends the string whose text starts at `from`; -1 when none does. */
function stringEnd(buf: Buffer, from: number): number {
  const n = buf.length;
  const stop = Math.min(n, from + SHORT_STRING);
  let i = from;
  for (; i < stop; i++) {
    const b = buf[i];
    if (b === BACKSLASH) i++;
    else if (b === QUOTE) return i;
  }
  // `i` is not inside an escape here: every backslash before it was paired up by the loop above.
  const clean = i;
  for (;;) {
    const q = buf.indexOf(QUOTE, i);
    if (q < 0) return -1;
    let run = 0;
    for (let k = q - 1; k >= clean && buf[k] === BACKSLASH; k--) run++;
    if (run % 2 === 0) return q;
    i = q + 1;
  }
}

/**
 * Refuses a body nested deeper than `maxDepth` (AIBRIDGE_MAX_JSON_DEPTH) with `invalid_json`,
 * before anything walks it recursively (serialising, redacting, describing the request); and,
 * given `maxContainers` (AIBRIDGE_MAX_JSON_CONTAINERS), one with more objects and arrays than
 * that before it is parsed: an empty object is two bytes of text and about 60 of heap, so a body
 * of them would cost the bridge some 30 times its size. And one whose top-level object names a
 * key twice: the bridge forwards the client's bytes, and another parser may keep the other value.
 */
export function assertJsonDepth(
  raw: Uint8Array | string,
  maxDepth: number,
  maxContainers = Number.POSITIVE_INFINITY,
): void {
  const bytes = typeof raw === 'string' ? Buffer.from(raw) : raw;
  // Each value costs a parse time and heap whatever its size: one object of two million short keys
  // (three containers) held the event loop for two seconds. Agents' bodies are mostly long strings.
  const maxValues = VALUES_PER_CONTAINER * maxContainers;
  const maxKeys = KEYS_PER_CONTAINER * maxContainers;
  const shape = jsonShape(bytes, maxDepth, maxContainers, maxValues, maxKeys);
  if (shape.depth > maxDepth)
    throw new BridgeError(
      'invalid_json',
      `The request body nests objects and arrays deeper than ${maxDepth} levels (AIBRIDGE_MAX_JSON_DEPTH).`,
    );
  if (shape.containers > maxContainers)
    throw new BridgeError(
      'invalid_json',
      `The request body holds more than ${maxContainers} objects and arrays (AIBRIDGE_MAX_JSON_CONTAINERS).`,
    );
  if (shape.keys > maxKeys)
    throw new BridgeError(
      'invalid_json',
      `The request body holds more than ${maxKeys} object keys (${KEYS_PER_CONTAINER} × AIBRIDGE_MAX_JSON_CONTAINERS).`,
    );
  if (shape.values > maxValues)
    throw new BridgeError(
      'invalid_json',
      `The request body holds more than ${maxValues} values (${VALUES_PER_CONTAINER} × AIBRIDGE_MAX_JSON_CONTAINERS).`,
    );
  // Which of two values a parser keeps differs between parsers: the bridge would check, price and
  // record one (`model`, `conversation`) while a provider's parser might act on the other.
  if (shape.duplicate !== undefined)
    throw new BridgeError(
      'invalid_json',
      `The request body names ${JSON.stringify(shape.duplicate.slice(0, 64))} more than once at its top level.`,
    );
}
