import assert from 'node:assert/strict';
import { jsonDepth, jsonShape } from '../../server/http/json-depth';
import { seededRandom } from '../helpers/seeded-random';

/** The byte-by-byte scan jsonDepth replaced: the new one must agree with it on any bytes. */
function depthBefore(raw: Uint8Array, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i];
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x7b || b === 0x5b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (b === 0x7d || b === 0x5d) depth--;
  }
  return deepest;
}

describe('JSON nesting depth', () => {
  it('agrees with a byte-by-byte scan on strings long and short, escaped quotes and backslash runs', () => {
    const r = seededRandom(7);
    // Heavy on the bytes that matter, so escapes straddle the point where the native search takes over.
    const alphabet = ['"', '\\', '{', '}', '[', ']', 'a', ' ', ',', ':', 'é'];
    for (let n = 0; n < 3000; n++) {
      let text = '';
      const len = Math.floor(r() * 200);
      for (let i = 0; i < len; i++) {
        const long = r() < 0.05;
        text += long ? 'x'.repeat(Math.floor(r() * 80)) : alphabet[Math.floor(r() * alphabet.length)];
      }
      const bytes = Buffer.from(text);
      assert.equal(jsonDepth(bytes), depthBefore(bytes), JSON.stringify(text));
      assert.equal(jsonDepth(bytes, 3), depthBefore(bytes, 3), JSON.stringify(text));
      // A plain Uint8Array (not a Buffer) reads the same.
      assert.equal(jsonDepth(new Uint8Array(bytes)), depthBefore(bytes));
    }
  });

  it('does not count brackets inside a long string, whatever escapes it holds', () => {
    const inner = `${'code(); \\"quoted\\" [x] {y} \\\\'.repeat(50)}`;
    const body = Buffer.from(`{"a":[{"t":"${inner}"}],"b":{"c":{"d":"${'\\\\'.repeat(40)}"}}}`);
    assert.equal(jsonDepth(body), 3);
    assert.equal(JSON.parse(body.toString()).a[0].t.length > 1000, true);
    // An escaped quote right after a run of escaped backslashes ends nothing; the next quote does.
    assert.equal(jsonDepth(Buffer.from(`["${'y'.repeat(40)}\\\\\\"[[[", []]`)), 2);
  });
});

describe('JSON top-level duplicate keys', () => {
  const dup = (text: string): string | undefined => jsonShape(Buffer.from(text)).duplicate;

  it('finds a key the top-level object names twice, however it is written, and nothing else', () => {
    assert.equal(dup('{"model":"a","model":"b"}'), 'model');
    assert.equal(dup(' { "a" : 1 ,\n "b":[1,{"a":2}], "a" : 3 } '), 'a');
    assert.equal(dup('{"mod\\u0065l":"a","model":"b"}'), 'model');
    assert.equal(dup('{"é":1,"\\u00e9":2}'), 'é');
    assert.equal(dup('{"a":1,"b":{"a":2,"a":3},"c":[{"a":4}]}'), undefined, 'nested objects are their own');
    assert.equal(dup('[{"a":1,"a":2}]'), undefined, 'a top-level array has no keys');
    assert.equal(dup('{"a":"\\",\\"a\\":","b":"a"}'), undefined, 'a key inside a string');
    assert.equal(dup('{"a":1,"A":2}'), undefined, 'keys are case-sensitive');
  });

  it('never reports one in an object JSON.stringify wrote, and always the one spliced in', () => {
    const r = seededRandom(11);
    const names = ['model', 'a', 'b', 'x"y', 'é', '\\', 'conversation', '{', ','];
    const value = (d: number): unknown => {
      const k = r();
      if (d > 3 || k < 0.4) return r() < 0.5 ? Math.floor(r() * 100) : names[Math.floor(r() * names.length)];
      if (k < 0.7) return Array.from({ length: Math.floor(r() * 4) }, () => value(d + 1));
      return Object.fromEntries(
        Array.from({ length: Math.floor(r() * 4) }, () => [
          names[Math.floor(r() * names.length)]!,
          value(d + 1),
        ]),
      );
    };
    for (let n = 0; n < 2000; n++) {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5) + 1; i > 0; i--) o[names[Math.floor(r() * names.length)]!] = value(1);
      const text = JSON.stringify(o);
      assert.equal(dup(text), undefined, text);
      const again = Object.keys(o)[Math.floor(r() * Object.keys(o).length)]!;
      const spliced = `{${JSON.stringify(again)}:${JSON.stringify(value(1))},${text.slice(1)}`;
      assert.equal(dup(spliced), again, spliced);
    }
  });
});
