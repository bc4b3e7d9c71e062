import assert from 'node:assert/strict';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { onNewDatabase } from '../helpers/pg-store';
import { newRecord, toolCallNamed } from './contract';

/** Migration 8 on a database that already has records: the tool filter ignores their names' case too. */
describe('PostgreSQL: tool names from before the case-insensitive tool filter', function () {
  this.timeout(60_000);

  it('folds the tool names of existing rows, so tool=bash finds a Bash call recorded before', async () => {
    const { url, store, sql } = await onNewDatabase('toolcase');
    try {
      const at = newRecord(0).startedAt;
      const call = (name: string) => toolCallNamed(name, at);
      const names = [['Bash', 'Read'], ['bash'], ['Édit', 'édit'], ['ｓｈｅｌｌ'], []];
      for (const [i, n] of names.entries())
        await store.appendInterception(newRecord(i, { toolCalls: n.map(call) }));
      await store.close();
      // The rows as step 7 wrote them: each record's names as sent.
      for (const [i, n] of names.entries())
        await sql.query('UPDATE interceptions SET tools = $1 WHERE seq = $2', [n, i + 1]);
      await sql.query('DELETE FROM schema_migrations WHERE version = 8');
      assert.deepEqual((await sql.query('SELECT tools FROM interceptions WHERE seq = 1')).rows[0].tools, [
        'Bash',
        'Read',
      ]);

      const upgraded = new PostgresStore({ url, maxConnections: 2 });
      await upgraded.open();
      try {
        const seqs = async (tool: string) =>
          (await upgraded.listInterceptions({ tool }, 10)).items.map((r) => r.seq).sort((a, b) => a - b);
        for (const tool of ['bash', 'BASH', 'Bash']) assert.deepEqual(await seqs(tool), [1, 2], tool);
        assert.deepEqual(await seqs('read'), [1]);
        assert.deepEqual(await seqs('rea'), []);
        // Beyond ASCII: NFKC on any UTF-8 database; lower case only where its collation lowers
        // them (these tests' databases are C-collated: `Édit` keeps its capital there).
        assert.deepEqual(await seqs('shell'), [4]);
        assert.deepEqual(await seqs('édit'), [3]);
        // Rows written after the step are folded by the bridge, whatever the collation.
        await upgraded.appendInterception(newRecord(5, { toolCalls: [call('ÉDIT'), call('Bash')] }));
        assert.deepEqual(await seqs('Édit'), [3, 6]);
        assert.deepEqual(await seqs('bash'), [1, 2, 6]);
        // The index the filter uses still holds the folded names: one element per distinct folded name.
        assert.deepEqual(
          (await sql.query('SELECT tools FROM interceptions WHERE seq = 6')).rows[0].tools.sort(),
          ['bash', 'édit'],
        );
      } finally {
        await upgraded.close();
      }
    } finally {
      await sql.end();
    }
  });
});

/**
 * A rolling upgrade: the older replicas go on writing after the first new one migrated, filling the
 * columns as their own version did (stale-rows.ts). A current replica writes them again.
 */
describe('PostgreSQL: rows an older replica writes into the newer schema', function () {
  this.timeout(60_000);

  it('repairs them, so tool=, response ownership and q find them; one that does not parse stops being looked at', async () => {
    const { store, sql } = await onNewDatabase('stalerows');
    try {
      const at = newRecord(0).startedAt;
      const call = (name: string) => toolCallNamed(name, at);
      await store.appendInterception(
        newRecord(0, {
          toolCalls: [call('Bash'), call('Read')],
          responseId: 'resp_old_replica',
          prompt: 'Fix The Bug',
        }),
      );
      await store.appendInterception(newRecord(1, { toolCalls: [call('Bash')] }));
      await store.appendInterception(newRecord(2, { toolCalls: [call('Write')] }));
      // What the INSERT of a bridge from before steps 7, 8 and 10 leaves: names as sent, no
      // response owner, and `stale` from the column's default (it does not name the column).
      await sql.query(
        `UPDATE interceptions SET tools = '{Bash,Read}', response_id = NULL, prompt = 'stale form', stale = DEFAULT WHERE seq = 1`,
      );
      await sql.query(
        `UPDATE interceptions SET tools = '{Bash}', record = '{', stale = DEFAULT WHERE seq = 2`,
      );
      // Parses, but a tool call without a name: it must not hold up the rows after it.
      await sql.query(
        `UPDATE interceptions SET tools = '{Write}', record = '{"toolCalls":[{}]}', stale = DEFAULT WHERE seq = 3`,
      );
      const seqs = async (filter: { tool?: string; q?: string }) =>
        (await store.listInterceptions(filter, 10)).items.map((r) => r.seq).sort((a, b) => a - b);
      assert.deepEqual(await seqs({ tool: 'bash' }), [], 'what the older row leaves');
      assert.equal(await store.responseOwner('resp_old_replica'), undefined);

      assert.equal(await store.repairStaleRows(), 3);
      assert.deepEqual(await seqs({ tool: 'bash' }), [1]);
      assert.deepEqual(await seqs({ tool: 'READ' }), [1]);
      assert.deepEqual(await seqs({ q: 'fix the bug' }), [1]);
      assert.equal(await store.responseOwner('resp_old_replica'), 'usr_a');
      const rows = (await sql.query('SELECT seq, tools, stale FROM interceptions ORDER BY seq')).rows;
      assert.deepEqual(
        rows.map((r) => [Number(r.seq), r.tools.sort(), r.stale]),
        [
          [1, ['bash', 'read'], false],
          [2, ['Bash'], false], // its record does not parse: left as it was (verify reports it), not read again
          [3, ['Write'], false], // nor this one as a record: left as it was
        ],
      );
      assert.equal(await store.repairStaleRows(), 0);
    } finally {
      await store.close();
      await sql.end();
    }
  });

  it('a replica that writes records repairs what older replicas wrote meanwhile, without a restart', async () => {
    const { store, sql } = await onNewDatabase('stalelater', { repairEveryMs: 0 });
    try {
      const at = newRecord(0).startedAt;
      await store.appendInterception(newRecord(0, { toolCalls: [toolCallNamed('Bash', at)] }));
      await sql.query(`UPDATE interceptions SET tools = '{Bash}', stale = DEFAULT WHERE seq = 1`);
      await store.appendInterception(newRecord(1));
      const deadline = Date.now() + 10_000;
      let found: number[] = [];
      while (Date.now() < deadline) {
        found = (await store.listInterceptions({ tool: 'bash' }, 10)).items.map((r) => r.seq);
        if (found.length > 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(found, [1]);
    } finally {
      await store.close();
      await sql.end();
    }
  });

  it('step 10 marks the rows an older replica wrote after step 8 (a capital in a tool name), and they are repaired at start', async () => {
    const { url, store, sql } = await onNewDatabase('stalestep');
    try {
      const at = newRecord(0).startedAt;
      await store.appendInterception(newRecord(0, { toolCalls: [toolCallNamed('Bash', at)] }));
      await store.appendInterception(newRecord(1, { toolCalls: [toolCallNamed('Grep', at)] }));
      await store.close();
      // A database at step 9, where an older replica wrote seq 1 after step 8 ran.
      await sql.query('DROP INDEX interceptions_stale');
      await sql.query('ALTER TABLE interceptions DROP COLUMN stale');
      await sql.query('DELETE FROM schema_migrations WHERE version = 10');
      await sql.query(`UPDATE interceptions SET tools = '{Bash}' WHERE seq = 1`);

      const upgraded = new PostgresStore({ url, maxConnections: 2 });
      await upgraded.open();
      try {
        await upgraded.repairStaleRows();
        const seqs = async (tool: string) =>
          (await upgraded.listInterceptions({ tool }, 10)).items.map((r) => r.seq);
        assert.deepEqual(await seqs('bash'), [1]);
        assert.deepEqual(await seqs('grep'), [2]);
        assert.equal(
          (await sql.query('SELECT count(*)::int AS n FROM interceptions WHERE stale')).rows[0].n,
          0,
        );
      } finally {
        await upgraded.close();
      }
    } finally {
      await sql.end();
    }
  });
});
