import assert from 'node:assert/strict';
import pg from 'pg';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import { testPostgres } from '../helpers/postgres';
import { newRecord, toolCallNamed } from './contract';

/** Migration 8 on a database that already has records: the tool filter ignores their names' case too. */
describe('PostgreSQL: tool names from before the case-insensitive tool filter', function () {
  this.timeout(60_000);

  it('folds the tool names of existing rows, so tool=bash finds a Bash call recorded before', async () => {
    const url = await (await testPostgres()).createDatabase('toolcase');
    const store = new PostgresStore({ url, maxConnections: 2 });
    await store.open();
    const sql = new pg.Client({ connectionString: url });
    await sql.connect();
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
