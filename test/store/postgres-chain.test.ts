import assert from 'node:assert/strict';
import pg from 'pg';
import { claimChainAnchor, verifyStoredChain } from '../../server/audit/chain-anchor';
import { anchorJson, chainHash, GENESIS_ANCHOR, verifyChain } from '../../server/core/chain';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import type { Interception } from '../../shared/interception';
import { PgQueryLog } from '../helpers/pg-query-log';
import { testPostgres } from '../helpers/postgres';
import { newRecord } from './contract';

type Q = (...a: unknown[]) => Promise<unknown>;
const OLD = new Date('2020-01-01T00:00:00Z').getTime();

/** `n` records, all but the newest `keepNewest` past any retention cutoff. */
async function aged(n: number, keepNewest: number): Promise<{ url: string; a: PostgresStore }> {
  const url = await (await testPostgres()).createDatabase('chain_prune_read');
  const a = new PostgresStore({ url, maxConnections: 4 });
  await a.open();
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const at = i < n - keepNewest ? OLD + i * 1000 : Date.now() + i;
    writes.push(
      a.appendInterception(
        newRecord(i, { startedAt: new Date(at).toISOString(), endedAt: new Date(at + 5).toISOString() }),
      ),
    );
    if (writes.length >= 2000) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
  return { url, a };
}

/** The PostgreSQL side of tamper evidence: rows edited, stripped or deleted behind the bridge's back. */
describe('the audit chain in PostgreSQL', function () {
  this.timeout(60_000);

  async function filled(n: number): Promise<{ store: PostgresStore; sql: pg.Client }> {
    const url = await (await testPostgres()).createDatabase('chain');
    const store = new PostgresStore({ url, maxConnections: 2 });
    await store.open();
    for (let i = 0; i < n; i++) await store.appendInterception(newRecord(i));
    const sql = new pg.Client({ connectionString: url });
    await sql.connect();
    return { store, sql };
  }

  async function verify(store: PostgresStore) {
    return verifyChain(store.scanInterceptions({}), await store.chainHead());
  }

  it('two replicas writing at once keep one unbroken chain; a lone writer needs one round trip a batch', async () => {
    const url = await (await testPostgres()).createDatabase('chain2');
    const a = new PostgresStore({ url, maxConnections: 4 });
    const b = new PostgresStore({ url, maxConnections: 4 });
    await a.open();
    await b.open();
    try {
      // Bursts from both: each replica's head goes stale whenever the other wrote in between.
      for (let round = 0; round < 10; round++)
        await Promise.all([
          ...Array.from({ length: 15 }, (_, i) => a.appendInterception(newRecord(round * 100 + i))),
          ...Array.from({ length: 15 }, (_, i) => b.appendInterception(newRecord(round * 100 + 50 + i))),
        ]);
      const report = await verifyChain(a.scanInterceptions({}), await a.chainHead());
      assert.equal(report.ok, true, JSON.stringify(report.firstBreak));
      assert.equal(report.checked, 300);
      assert.equal((await a.chainHead()).seq, 300);

      // Alone, once it knows the head: one statement per batch, no BEGIN, lock or COMMIT.
      const log = new PgQueryLog(new URL(url).pathname.slice(1)).start();
      try {
        await a.appendInterception(newRecord(9000));
        log.clear();
        for (let i = 0; i < 5; i++) await a.appendInterception(newRecord(9001 + i));
        assert.equal(log.count(/./), 5, log.trips.map((t) => t.text.slice(0, 40)).join(' | '));
      } finally {
        log.stop();
      }
      const after = await verifyChain(b.scanInterceptions({}), await b.chainHead());
      assert.equal(after.ok, true);
      assert.equal(after.checked, 306);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('writes every batch shape through named statements, one text per name, whatever the batch size', async () => {
    // Each connection parses and plans a named statement once (docs/performance.md): a name reused
    // with another text would make the driver refuse the batch, so sizes and shapes are mixed here.
    const url = await (await testPostgres()).createDatabase('chain_named');
    const store = new PostgresStore({ url, maxConnections: 1 });
    await store.open();
    const log = new PgQueryLog(new URL(url).pathname.slice(1)).start();
    try {
      const withResult = (i: number) =>
        newRecord(i, {
          toolResults: [{ callId: `call_${i}`, isError: false, content: null, contentLength: 3 }],
        });
      let i = 0;
      for (const size of [1, 4, 2, 7]) {
        await Promise.all(Array.from({ length: size }, () => store.appendInterception(newRecord(i++))));
        await Promise.all(Array.from({ length: size }, () => store.appendInterception(withResult(i++))));
      }
      const texts = new Map<string, string>();
      for (const { prepared } of log.trips) {
        if (!prepared?.name.startsWith('aibridge_batch')) continue;
        const { name, text } = prepared;
        const before = texts.get(name);
        assert.ok(before === undefined || before === text, `${name} was sent with two texts`);
        texts.set(name, text);
      }
      // The first batch links under the head row's lock (unguarded), the rest to the head it knows.
      assert.deepEqual([...texts.keys()].sort(), [
        'aibridge_batch_g',
        'aibridge_batch_gr',
        'aibridge_batch_u',
      ]);
      const report = await verify(store);
      assert.equal(report.ok, true, JSON.stringify(report.firstBreak));
      assert.equal(report.checked, i);
    } finally {
      log.stop();
      await store.close();
    }
  });

  it('a row whose record lost its hash fields after chained rows is a break at it', async () => {
    const { store, sql } = await filled(6);
    try {
      await sql.query(
        `UPDATE interceptions SET record = ((record::jsonb - 'hash' - 'prevHash') || '{"costUsd": 0}'::jsonb)::text
          WHERE seq = 3`,
      );
      const report = await verify(store);
      assert.equal(report.ok, false);
      assert.equal(report.firstBreak?.seq, 3);
      assert.match(report.firstBreak!.reason, /hash fields were removed/);
    } finally {
      await sql.end();
      await store.close();
    }
  });

  it('a newest row rewritten with a matching hash is caught against the chain head row', async () => {
    const { store, sql } = await filled(6);
    try {
      const row = await sql.query<{ record: string }>('SELECT record FROM interceptions WHERE seq = 6');
      const rec = JSON.parse(row.rows[0]!.record) as Interception;
      const edited = { ...rec, usage: { ...rec.usage, output: 1 } };
      const forged = { ...edited, hash: chainHash(edited.prevHash!, edited) };
      await sql.query('UPDATE interceptions SET record = $1 WHERE seq = 6', [JSON.stringify(forged)]);
      const report = await verify(store);
      assert.equal(report.firstBreak?.seq, 6);
      assert.match(report.firstBreak!.reason, /chain head/);
    } finally {
      await sql.end();
      await store.close();
    }
  });

  it('a row appended past the chain head behind its back is a break; a member never gets a row whose user_id was rewritten', async () => {
    const { store, sql } = await filled(6);
    try {
      const row = await sql.query<{ record: string }>('SELECT record FROM interceptions WHERE seq = 6');
      const last = JSON.parse(row.rows[0]!.record) as Interception;
      // A whole, well-linked record after the head, with the head row left as it was.
      const body = {
        ...last,
        id: 'int_forged',
        seq: 7,
        prevHash: last.hash!,
        usage: { ...last.usage, output: 0 },
      };
      const forged = { ...body, hash: chainHash(body.prevHash, body) };
      await sql.query(
        `INSERT INTO interceptions (seq, id, user_id, team, provider, api, model, client, session_id, status, started_at, record)
         VALUES (7, 'int_forged', $1, NULL, 'anthropic', 'messages', 'claude-sonnet-4-6', 'claude-code', NULL, 'ok', now(), $2)`,
        [last.userId, JSON.stringify(forged)],
      );
      const report = await verifyStoredChain(store);
      assert.equal(report.ok, false);
      assert.equal(report.firstBreak?.seq, 7);
      assert.match(report.firstBreak!.reason, /past the chain head/);

      // usr_b's record 1 handed to usr_a by its column alone: usr_a's list does not show it.
      await sql.query("UPDATE interceptions SET user_id = 'usr_a' WHERE seq = 2");
      const mine = await store.listInterceptions({ userId: 'usr_a' }, 50);
      assert.ok(mine.items.every((r) => r.userId === 'usr_a'));
      assert.ok(!mine.items.some((r) => r.seq === 2));
      const scanned: number[] = [];
      for await (const r of store.scanInterceptions({ userId: 'usr_a' })) scanned.push(r.seq);
      assert.ok(!scanned.includes(2));
      // Outside the hash, the columns are checked against the records by verify.
      await sql.query('DELETE FROM interceptions WHERE seq = 7');
      const moved = await verifyStoredChain(store);
      assert.equal(moved.ok, false);
      assert.equal(moved.firstBreak?.seq, 2);
      assert.match(moved.firstBreak!.reason, /its user_id column does not say what its record says/);
      await sql.query("UPDATE interceptions SET user_id = 'usr_b' WHERE seq = 2");
      await sql.query("UPDATE interceptions SET started_at = '2001-01-01' WHERE seq = 4");
      const dated = await verifyStoredChain(store);
      assert.equal(dated.firstBreak?.seq, 4);
      assert.match(dated.firstBreak!.reason, /started_at/);
    } finally {
      await sql.end();
      await store.close();
    }
  });

  it('a verify reading while a prune deletes in chunks after moving the anchor finds no break (retention only)', async () => {
    const { url, a } = await aged(12_000, 50);
    const b = new PostgresStore({ url, maxConnections: 4 }); // another replica, or `aibridge audit verify`
    await b.open();
    // Replica A prunes: its anchor moves, then its first DELETE waits for a gate.
    let releaseDelete!: () => void;
    const deleteGate = new Promise<void>((r) => (releaseDelete = r));
    let deleteDone!: () => void;
    const firstDeleteDone = new Promise<void>((r) => (deleteDone = r));
    let anchorMoved!: () => void;
    const anchorMovedP = new Promise<void>((r) => (anchorMoved = r));
    const aq = (a as unknown as { query: Q }).query.bind(a);
    let deletes = 0;
    (a as unknown as { query: Q }).query = async (...args: unknown[]) => {
      const text = String(typeof args[0] === 'string' ? args[0] : (args[0] as { text: string }).text);
      if (text.startsWith('DELETE FROM interceptions')) {
        if (deletes++ === 0) {
          await deleteGate;
          const r = await aq(...args);
          deleteDone();
          return r;
        }
      }
      const r = await aq(...args);
      if (text.includes('INSERT INTO bridge_settings')) anchorMoved();
      return r;
    };
    // B's scan: after its first chunk, the prune's first DELETE runs (as it would, concurrently).
    // Verify's scan reads each chunk of records with their columns (scanForVerify).
    const bread = (b as unknown as { read: Q }).read.bind(b);
    let scans = 0;
    (b as unknown as { read: Q }).read = async (...args: unknown[]) => {
      if (/SELECT [\s\S]*record\s+FROM interceptions WHERE seq >/.test(String(args[1])) && scans++ === 1) {
        releaseDelete();
        await firstDeleteDone;
      }
      return bread(...args);
    };
    const pruning = a.pruneInterceptions(new Date(Date.now() - 86_400_000).toISOString());
    await anchorMovedP;
    const report = await verifyStoredChain(b);
    const pruned = await pruning;
    const after = await verifyStoredChain(b);
    assert.ok(pruned > 0);
    assert.equal(after.ok, true);
    await a.close();
    await b.close();
    assert.equal(report.ok, true, 'nothing was edited: retention only');
  });

  it('the oldest rows deleted behind its back are a break; pruned by retention they are not', async () => {
    const url = await (await testPostgres()).createDatabase('chain_start');
    const store = new PostgresStore({ url, maxConnections: 2 });
    await store.open();
    // As at start-up, before any record.
    await claimChainAnchor(store);
    for (let i = 0; i < 6; i++) await store.appendInterception(newRecord(i));
    const sql = new pg.Client({ connectionString: url });
    await sql.connect();
    try {
      await sql.query('DELETE FROM interceptions WHERE seq <= 2');
      const report = await verifyStoredChain(store);
      assert.equal(report.ok, false);
      assert.equal(report.firstBreak?.seq, 3);
      assert.match(report.firstBreak!.reason, /does not start the kept chain/);
      // Retention moves the start before it deletes: what it prunes is no break.
      await store.pruneInterceptions(new Date(Date.parse(newRecord(4).startedAt)).toISOString());
      const pruned = await verifyStoredChain(store);
      assert.equal(pruned.ok, true, JSON.stringify(pruned));
      // Two replicas pruning with cutoffs a moment apart, the later one first: the start stays
      // where the furthest prune left it.
      await store.pruneInterceptions(new Date(Date.parse(newRecord(5).startedAt)).toISOString());
      await store.pruneInterceptions(new Date(Date.parse(newRecord(3).startedAt)).toISOString());
      const both = await verifyStoredChain(store);
      assert.equal(both.ok, true, JSON.stringify(both));
    } finally {
      await sql.end();
      await store.close();
    }
  });

  it('verify checks again as long as the start moved meanwhile: two prunes during one verify are no break', async () => {
    const url = await (await testPostgres()).createDatabase('chain_moving');
    const store = new PostgresStore({ url, maxConnections: 2 });
    await store.open();
    try {
      await claimChainAnchor(store);
      const recs = [];
      for (let i = 0; i < 6; i++) recs.push(await store.appendInterception(newRecord(i)));
      await store.pruneInterceptions(recs[2]!.startedAt);
      const kept = await store.getSetting('chain_anchor');
      // The start as two earlier prunes left it, each read by a check the next prune overtook:
      // what a verify sees while two replicas prune (at start-up, or hourly) during it.
      const earlier = [
        anchorJson(GENESIS_ANCHOR),
        anchorJson({ afterSeq: recs[0]!.seq, hash: recs[0]!.hash! }),
      ];
      const reads = [earlier[0], earlier[1], earlier[1], kept];
      const moving = Object.create(store) as PostgresStore;
      moving.getSetting = async (name) =>
        name === 'chain_anchor' ? (reads.shift() ?? kept) : store.getSetting(name);
      const report = await verifyStoredChain(moving);
      assert.equal(report.ok, true, JSON.stringify(report));
      // A start that stays put is checked once: a real break is reported.
      const still = Object.create(store) as PostgresStore;
      still.getSetting = async (name) => (name === 'chain_anchor' ? earlier[0] : store.getSetting(name));
      const broken = await verifyStoredChain(still);
      assert.equal(broken.ok, false);
      assert.match(broken.firstBreak!.reason, /does not start the kept chain/);
    } finally {
      await store.close();
    }
  });

  it('a batch whose COMMIT went through while its answer was lost is not stored twice when it comes back', async () => {
    const url = await (await testPostgres()).createDatabase('chain_lost_commit');
    const store = new PostgresStore({ url, maxConnections: 2 });
    await store.open();
    try {
      const first = await store.appendInterception(newRecord(0));
      // The next transaction commits, then its connection "breaks" before the answer arrives.
      const pool = (store as unknown as { pool: pg.Pool }).pool;
      const connect = pool.connect.bind(pool);
      let broken = false;
      // pg's own pool.query() checks out with a callback: that path is left as it is.
      pool.connect = ((...args: unknown[]) => {
        if (args.length > 0) return (connect as (...a: unknown[]) => unknown)(...args);
        return breakingCommit();
      }) as typeof pool.connect;
      const breakingCommit = async (): Promise<pg.PoolClient> => {
        const c = await connect();
        const query = c.query.bind(c) as (q: unknown) => Promise<unknown>;
        (c as unknown as { query: (q: unknown) => Promise<unknown> }).query = async (q: unknown) => {
          const r = await query(q);
          if (q === 'COMMIT' && !broken) {
            broken = true;
            throw new Error('Connection terminated unexpectedly');
          }
          return r;
        };
        return c;
      };
      // Contended: another replica moved the head, so this write goes under the head's lock.
      const other = new PostgresStore({ url, maxConnections: 1 });
      await other.open();
      await other.appendInterception(newRecord(1));
      await other.close();
      await assert.rejects(store.appendInterception(newRecord(2)), /store|database|terminated/i);
      pool.connect = connect as typeof pool.connect;
      // The recorder's retry sends the same record again; a new one follows it.
      const again = await store.appendInterception(newRecord(2));
      const next = await store.appendInterception(newRecord(3));
      const ids: string[] = [];
      for await (const r of store.scanInterceptions({})) ids.push(r.id);
      assert.deepEqual(ids, [newRecord(0).id, newRecord(1).id, newRecord(2).id, newRecord(3).id]);
      assert.equal(again.seq, 3);
      assert.equal(next.seq, 4);
      assert.equal(first.seq, 1);
      assert.equal((await verifyStoredChain(store)).ok, true);
    } finally {
      await store.close();
    }
  });

  it('two replicas pruning at once with different cutoffs leave a chain that verifies', async () => {
    const url = await (await testPostgres()).createDatabase('chain_prunes');
    const a = new PostgresStore({ url, maxConnections: 2 });
    const b = new PostgresStore({ url, maxConnections: 2 });
    await a.open();
    await b.open();
    try {
      await claimChainAnchor(a);
      for (let i = 0; i < 40; i++) await a.appendInterception(newRecord(i));
      const cut = (i: number): string => new Date(Date.parse(newRecord(i).startedAt)).toISOString();
      for (const [early, late] of [
        [5, 10],
        [15, 20],
        [25, 30],
      ] as const) {
        await Promise.all([a.pruneInterceptions(cut(late)), b.pruneInterceptions(cut(early))]);
        const report = await verifyStoredChain(a);
        assert.equal(
          report.ok,
          true,
          `after prunes at ${early} and ${late}: ${JSON.stringify(report.firstBreak)}`,
        );
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('the newest rows deleted are reported missing at the tail, and stay a break after new writes', async () => {
    const { store, sql } = await filled(6);
    try {
      await sql.query('DELETE FROM interceptions WHERE seq > 4');
      const report = await verify(store);
      assert.equal(report.ok, false);
      assert.equal(report.firstBreak, null);
      assert.deepEqual(report.truncated, { missing: 2, lastSeq: 4, headSeq: 6 });
      await store.appendInterception(newRecord(6));
      const after = await verify(store);
      assert.equal(after.firstBreak?.seq, 7);
      assert.match(after.firstBreak!.reason, /2 missing before it/);
    } finally {
      await sql.end();
      await store.close();
    }
  });
});
