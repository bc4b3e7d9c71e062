import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { canonicalJson, chainHash, chainLink, GENESIS } from '../../server/core/chain';
import type { Interception } from '../../shared/interception';
import { seededRandom } from '../helpers/seeded-random';

/** The implementation every stored hash was made with: the new one must match it byte for byte. */
function canonicalJsonBefore(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map(canonicalJsonBefore).join(',')}]`;
  const entries = Object.entries(v as Record<string, unknown>)
    .filter(([, x]) => x !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJsonBefore(x)}`).join(',')}}`;
}

const KEYS = [
  'a',
  'b',
  'B',
  'Z',
  '',
  ' ',
  'id',
  'hash',
  'prevHash',
  '10',
  '2',
  '01',
  '-1',
  '__proto__x',
  'é',
  'e\u0301',
  '日本',
  '😀',
  '\ud800',
  'a"b',
  'line\nbreak',
  'tab\t',
  '\u2028',
  'constructor',
  'toString',
];
const STRINGS = [
  '',
  'x',
  'ünï',
  '😀',
  '\ud83d',
  '"quoted"',
  '\\',
  '\u0000',
  '\u2029',
  '</script>',
  'x'.repeat(50),
];
const NUMBERS = [
  0,
  -0,
  1,
  -1,
  1.5,
  1e21,
  1e-7,
  -1e21,
  2 ** 53,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.NaN,
  Infinity,
  -Infinity,
  0.1 + 0.2,
];

function value(r: () => number, depth: number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const kind = Math.floor(r() * (depth > 3 ? 6 : 9));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return undefined;
    case 2:
      return r() < 0.5;
    case 3:
      return pick(NUMBERS);
    case 4:
      return pick(STRINGS);
    case 5:
      return Math.floor(r() * 1e6) - 5e5;
    case 6: {
      const n = Math.floor(r() * 5);
      const arr: unknown[] = [];
      for (let i = 0; i < n; i++) arr.push(value(r, depth + 1));
      if (r() < 0.2) arr[n + 1] = value(r, depth + 1); // a hole at n
      return arr;
    }
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(r() * 7);
      for (let i = 0; i < n; i++) o[pick(KEYS)] = value(r, depth + 1);
      return o;
    }
  }
}

describe('canonical JSON of audit records', () => {
  it('is byte-identical to the implementation older hashes were made with, on many generated values', () => {
    const r = seededRandom(21);
    for (let i = 0; i < 5000; i++) {
      const v = value(r, 0);
      assert.equal(canonicalJson(v), canonicalJsonBefore(v), `value #${i}`);
    }
  });

  it('matches it when objects with the same keys come again, in the same order or another', () => {
    // The sorted key list is kept per key count and reused while the keys come in the same order.
    const shapes: Record<string, unknown>[] = [
      { b: 1, a: 2, c: 3 },
      { b: 4, a: 5, c: 6 },
      { c: 7, a: 8, b: 9 },
      { b: 1, a: 2, d: 3 },
      { b: 1, a: 2, c: 3 },
      { 2: 'x', 10: 'y', a: 1 },
      { 2: 'x', 10: 'y', a: 1 },
      { a: 1, b: { b: 1, a: 2, c: 3 }, c: [{ c: 7, a: 8, b: 9 }] },
    ];
    for (let round = 0; round < 3; round++)
      for (const v of shapes) assert.equal(canonicalJson(v), canonicalJsonBefore(v), JSON.stringify(v));
  });

  it('matches it on the edge cases by name', () => {
    const odd: unknown[] = [
      undefined,
      null,
      -0,
      1e21,
      Number.NaN,
      [],
      {},
      [undefined, null, () => 1],
      // biome-ignore lint/suspicious/noSparseArray: holes are one of the cases compared
      [1, , 2],
      { a: undefined, b: null, c: () => 1, d: Symbol('s') },
      { z: 1, a: { y: [{ b: 2, a: 1 }], x: undefined }, 10: 'ten', 2: 'two' },
      Object.assign(Object.create({ inherited: 1 }), { own: 2 }),
      new Date(0),
      new Map([[1, 2]]),
      { é: 1, 'e\u0301': 2, '😀': 3, ｚ: 4, Z: 5 },
    ];
    for (const v of odd) assert.equal(canonicalJson(v), canonicalJsonBefore(v));
  });

  it('writes every UTF-16 code unit, alone and inside text, as JSON.stringify does', () => {
    // Strings skip JSON.stringify when nothing in them needs escaping: the check must not miss one.
    for (let c = 0; c <= 0xffff; c++) {
      const ch = String.fromCharCode(c);
      for (const s of [ch, `ab${ch}cd`])
        assert.equal(canonicalJson(s), JSON.stringify(s), `U+${c.toString(16)}`);
    }
    for (const s of [
      '😀',
      'a😀b',
      '\udc00\ud83d',
      '\ud83d\ude00\ud83d',
      '\u007f',
      '\u2028\u2029',
      'x'.repeat(5000),
    ])
      assert.equal(canonicalJson(s), JSON.stringify(s));
  });

  it('gives a stored record the hash it was given before', () => {
    const rec = {
      id: 'r1',
      seq: 7,
      prevHash: GENESIS,
      startedAt: '2026-12-01T00:00:00.000Z',
      prompt: 'héllo 😀',
      toolCalls: [
        { id: 't', name: 'n', server: null, input: { z: [1, undefined], a: -0 }, injected: false, at: 'x' },
      ],
      costUsd: null,
      extra: undefined,
    } as unknown as Interception;
    const before = createHash('sha256')
      .update(GENESIS)
      .update('\n')
      .update(canonicalJsonBefore(rec))
      .digest('hex');
    assert.equal(chainHash(GENESIS, rec), before);
  });
});

describe('a chained record as one serialisation', () => {
  it('is the record with its hash, parsed back whole, and hashes as the record does', () => {
    const r = seededRandom(7);
    let plain = 0;
    for (let i = 0; i < 500; i++) {
      const body = value(r, 1);
      const rec = {
        id: `r${i}`,
        seq: i + 1,
        prevHash: GENESIS,
        body: body === undefined ? null : body,
        note: undefined,
      } as unknown as Interception;
      const { hash, json } = chainLink(GENESIS, rec);
      assert.equal(hash, chainHash(GENESIS, rec));
      const parsed = JSON.parse(json) as Interception;
      // What a reader gets back is what JSON.stringify of the record would have given it.
      assert.deepEqual(parsed, JSON.parse(JSON.stringify({ ...rec, hash })));
      // And for JSON data (not holes, functions, Dates: those never verified) the verifier's hash
      // of the parsed record is the one stored.
      if (canonicalJson(JSON.parse(JSON.stringify(body ?? null))) === canonicalJson(body ?? null)) {
        plain++;
        assert.equal(chainHash(parsed.prevHash!, parsed), hash);
      }
    }
    assert.ok(plain > 300, `${plain} plain records`);
  });

  it('is written as JSON.stringify writes it when the record holds what JSON cannot', () => {
    // biome-ignore lint/suspicious/noSparseArray: a hole is one of the cases
    for (const odd of [[1, , 2], { f: () => 1 }, new Date(0), [Symbol('s')]]) {
      const rec = { id: 'x', seq: 1, prevHash: GENESIS, odd } as unknown as Interception;
      const { hash, json } = chainLink(GENESIS, rec);
      assert.equal(json, JSON.stringify({ ...rec, hash }));
      assert.equal(hash, chainHash(GENESIS, rec));
    }
  });
});
