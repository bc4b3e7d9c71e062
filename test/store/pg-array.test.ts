import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import pg from 'pg';
import { GENESIS, linkRecord } from '../../server/core/chain';
import { pgArray } from '../../server/store/postgres/pg-array';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { batchStatement } from '../../server/store/postgres/record-batch';
import { pgText } from '../../server/store/postgres/sql-filter';
import { searchForm } from '../../server/store/search-text';
import type { Interception } from '../../shared/interception';
import { testPostgres } from '../helpers/postgres';
import { seededRandom } from '../helpers/seeded-random';
import { newRecord } from './contract';

// The driver's own conversion of a parameter, which every batch used before: the literal must be
// the same text, so PostgreSQL reads the same values.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils') as {
  prepareValue(v: unknown): string | null;
};

const PIECES = [
  '',
  'a',
  'x'.repeat(40),
  '"',
  '\\',
  '\\"',
  '""',
  '{',
  '}',
  ',',
  ' ',
  'NULL',
  'null',
  '\n',
  '\t',
  '\r\n',
  '\u0001',
  '\u001f',
  '\u007f',
  'é',
  '日本',
  '😀',
  '\ud83d',
  '\ude00',
  '\u2028',
  '{"hash":"ab","prompt":"say \\"hi\\"\\n"}',
];

function text(r: () => number): string {
  let s = '';
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)]!;
  return s;
}

function element(r: () => number): string | number | boolean | null | undefined {
  const k = Math.floor(r() * 10);
  if (k === 0) return null;
  if (k === 1) return undefined;
  if (k === 2) return r() < 0.5;
  if (k === 3) return [0, -0, 1, -1, 0.0054, 1e21, 1e-7, 2 ** 53, Number.NaN][Math.floor(r() * 9)]!;
  return text(r);
}

describe('array parameters for PostgreSQL', () => {
  it('are the literal node-postgres writes for the same array, on generated arrays', () => {
    const r = seededRandom(8);
    for (let i = 0; i < 5000; i++) {
      const arr = Array.from({ length: Math.floor(r() * 6) }, () => element(r));
      assert.equal(pgArray(arr), prepareValue(arr), JSON.stringify(arr));
    }
  });

  it('match it on a record line and a prompt of code, the two long texts of a batch', () => {
    const prompt = 'fix this:\n\tconst s = "a\\\\b";\n  return s + 1; // 😀 \ud800\n'.repeat(200);
    const line = JSON.stringify({ hash: 'ab'.repeat(32), prompt, toolCalls: [{ input: { path: 'C:\\x' } }] });
    for (const arr of [[line, prompt, null], [prompt], [line], []])
      assert.equal(pgArray(arr), prepareValue(arr));
  });
});

describe('a batch of records written to PostgreSQL', function () {
  this.timeout(60_000);

  /** Linked records, their stored JSON as the store makes it, and a client on a migrated database. */
  async function setUp(prompts: string[]) {
    const url = await (await testPostgres()).createDatabase('batch');
    const store = new PostgresStore({ url, maxConnections: 1 });
    await store.open();
    await store.close();
    const sql = new pg.Client({ connectionString: url });
    await sql.connect();
    await sql.query('INSERT INTO chain_head (seq, hash) VALUES (0, $1) ON CONFLICT DO NOTHING', [GENESIS]);
    const recs: Interception[] = [];
    const json: string[] = [];
    let prev = GENESIS;
    for (const [i, prompt] of prompts.entries()) {
      const linked = linkRecord(newRecord(i, { prompt }), i + 1, prev);
      recs.push(linked.record);
      json.push(linked.json);
      prev = linked.hash;
    }
    return { sql, recs, json, to: { seq: recs.length, hash: prev } };
  }

  /** Runs a batch's statement, which must write (n = 1), and reads back what it stored, in order. */
  async function stored(sql: pg.Client, st: ReturnType<typeof batchStatement>) {
    assert.equal((await sql.query(st)).rows[0].n, 1);
    return (await sql.query('SELECT record, prompt FROM interceptions ORDER BY seq')).rows as {
      record: string;
      prompt: string | null;
    }[];
  }

  const PROMPTS = ['say "hi" {a,b} \\ back\\slash\nnew line\ttab 😀 NULL', '', '"', '\\', 'x'.repeat(20_000)];

  it('stores each record as the exact JSON that was hashed, and each prompt’s search form', async () => {
    const { sql, recs, json, to } = await setUp(PROMPTS);
    try {
      const st = batchStatement(recs, json, { to });
      assert.equal(st.name, 'aibridge_batch_u', 'the records go as one text the database splits');
      const rows = await stored(sql, st);
      assert.deepEqual(
        rows.map((r) => r.record),
        json,
      );
      assert.deepEqual(
        rows.map((r) => r.prompt),
        // The column is for search only: each prompt's search form (the record keeps it as sent).
        recs.map((r) => pgText(r.prompt === null ? null : searchForm(r.prompt))),
      );
    } finally {
      await sql.end();
    }
  });

  it('stores a record whose JSON holds a raw newline (none does) through the array form, as it is', async () => {
    const { sql, recs, json, to } = await setUp(['one', 'two']);
    try {
      const pretty = json.map((j) => JSON.stringify(JSON.parse(j), null, 2));
      const st = batchStatement(recs, pretty, { to });
      assert.equal(st.name, 'aibridge_batch_ua', 'another statement name: the text differs');
      const rows = await stored(sql, st);
      assert.deepEqual(
        rows.map((r) => r.record),
        pretty,
      );
    } finally {
      await sql.end();
    }
  });
});
