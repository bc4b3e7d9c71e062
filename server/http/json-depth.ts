import { BridgeError } from '../errors';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * The deepest nesting of objects and arrays in JSON text, read in one pass over the bytes without
 * recursion (a hostile body cannot overflow the stack here). Brackets inside strings do not count;
 * UTF-8 continuation bytes are never ASCII, so scanning bytes is exact. Not a validator: it stops
 * as soon as `limit` is passed and returns `limit + 1`.
 */
export function jsonDepth(raw: Uint8Array, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return deepest;
}

/**
 * Refuses a body nested deeper than `maxDepth` (AIBRIDGE_MAX_JSON_DEPTH) with `invalid_json`,
 * before anything walks it recursively (serialising, redacting, describing the request).
 */
export function assertJsonDepth(raw: Uint8Array | string, maxDepth: number): void {
  const bytes = typeof raw === 'string' ? Buffer.from(raw) : raw;
  if (jsonDepth(bytes, maxDepth) > maxDepth)
    throw new BridgeError(
      'invalid_json',
      `The request body nests objects and arrays deeper than ${maxDepth} levels (AIBRIDGE_MAX_JSON_DEPTH).`,
    );
}
