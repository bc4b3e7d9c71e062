import assert from 'node:assert/strict';
import pg from 'pg';
import { PostgresStore } from '../../server/store/postgres/postgres-store';
import type { StoreChange } from '../../server/store/types';
import type { Interception, Page } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { type Asked, askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

const METRICS_TOKEN = 'metrics-token-for-outage-tests';

function ask(tb: TestBridge, key: string): Promise<Asked> {
  return askMessages(tb.url, key);
}

/** Cuts the database off (refuses and drops every connection to it), as an outage would. */
async function outage(adminUrl: string, db: string, down: boolean): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS ${down ? 'false' : 'true'}`);
    if (down)
      await c.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [db],
      );
  } finally {
    await c.end();
  }
}

describe('the PostgreSQL store when the database is unreachable', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let adminUrl: string;
  before(async () => {
    upstream = await new AnthropicMock().start();
    adminUrl = (await testPostgres()).url;
  });
  after(async () => {
    await upstream.stop();
  });

  async function bridgeOn(mode: 'open' | 'closed'): Promise<{ tb: TestBridge; db: string; url: string }> {
    const url = await (await testPostgres()).createDatabase(`outage_${mode}`);
    const tb = await startBridge(upstream.url, {
      AIBRIDGE_DATABASE_URL: url,
      AIBRIDGE_AUDIT_FAILURE: mode,
      // Readiness details during the outage: an admin key cannot be checked then, the token can.
      AIBRIDGE_METRICS_TOKEN: METRICS_TOKEN,
    });
    return { tb, db: new URL(url).pathname.slice(1), url };
  }

  it('closed (the default): refuses with 503 store_unavailable, is not ready, and recovers by itself', async () => {
    const { tb, db, url } = await bridgeOn('closed');
    // Another replica's view of the database: its change feed must survive the outage too.
    const other = new PostgresStore({ url });
    await other.open();
    const changes: StoreChange[] = [];
    other.watch((c) => changes.push(c));
    try {
      const dev = await tb.addUser('dev@example.com');
      assert.equal((await ask(tb, dev.key)).status, 200);
      await tb.interceptions(1);
      // The bridge learns of the outage when its change feed's connection drops (then it no longer
      // trusts the keys it cached). A request that gets in before that socket closes is served
      // from the cache, and its record waits for the database: the refusal is asked after it.
      const noticed = new Promise<void>((resolve) => {
        const stop = tb.bridge.store.watch((c) => {
          if (c.kind !== 'resync') return;
          stop();
          resolve();
        });
      });
      await outage(adminUrl, db, true);
      await noticed;
      const refused = await ask(tb, dev.key);
      assert.equal(refused.status, 503, refused.body);
      assert.match(refused.body, /database/);
      const ready = await tb.api<{ store: { ok: boolean; detail: string } }>('GET', '/readyz', METRICS_TOKEN);
      assert.equal(ready.status, 503);
      assert.equal(ready.body.store.ok, false);
      assert.match(ready.body.store.detail, /database unreachable/);
      assert.equal(upstream.messageRequests().length, 1, 'nothing unaudited reached the provider');

      await outage(adminUrl, db, false);
      await eventually(async () => (await ask(tb, dev.key)).status === 200, {
        what: 'requests to be served again',
        timeoutMs: 15_000,
        intervalMs: 100,
      });
      const recs = await tb.interceptions(2);
      assert.equal(recs.length, 2);
      const verify = await tb.api<{ ok: boolean }>('GET', '/api/v1/audit/verify', tb.adminKey);
      assert.equal(verify.body.ok, true);

      // Both change feeds listen again: a document changed through the bridge reaches the other store.
      await eventually(
        async () => {
          const put = await tb.api('PUT', '/api/v1/teams/red/capture', tb.adminKey, { level: 'none' });
          assert.equal(put.status, 200, JSON.stringify(put.body));
          // A change made while the feed was still down is not replayed: give each one a short look, then change again.
          return eventually(() => changes.some((c) => c.kind === 'doc' && c.docKind === 'team_capture'), {
            timeoutMs: 200,
          }).catch(() => false);
        },
        { what: 'the change feeds to reconnect', timeoutMs: 15_000, intervalMs: 100 },
      );
    } finally {
      await outage(adminUrl, db, false);
      await other.close();
      await tb.close();
    }
  });

  it('open: serves keys it confirmed recently, queues their records, and writes them once the database is back', async () => {
    const { tb, db } = await bridgeOn('open');
    try {
      const dev = await tb.addUser('dev@example.com');
      const stranger = await tb.addUser('stranger@example.com');
      const revoked = await tb.addUser('revoked@example.com');
      assert.equal((await ask(tb, dev.key)).status, 200);
      assert.equal((await ask(tb, revoked.key)).status, 200);
      await tb.interceptions(2);
      // Revoked before the outage, and not used since: what was remembered of it ends with it.
      const revoking = await tb.api('DELETE', `/api/v1/keys/${revoked.keyId}`, tb.adminKey);
      assert.equal(revoking.status, 200);
      const before = upstream.messageRequests().length;
      await outage(adminUrl, db, true);
      const served = await ask(tb, dev.key);
      assert.equal(served.status, 200, served.body);
      assert.equal(upstream.messageRequests().length, before + 1);
      const unknown = await ask(tb, stranger.key);
      assert.equal(unknown.status, 503, 'a key never confirmed is not let through');
      const gone = await ask(tb, revoked.key);
      assert.equal(gone.status, 503, 'a key revoked before the outage is not served from memory');
      assert.equal(upstream.messageRequests().length, before + 1);
      await eventually(async () => tb.bridge.recorder.auditState().degraded, {
        what: 'the record to wait for the store',
        timeoutMs: 15_000,
        intervalMs: 100,
      });

      await outage(adminUrl, db, false);
      await eventually(async () => !tb.bridge.recorder.auditState().degraded, {
        what: 'the queued record to be written',
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      const page = await tb.api<Page<Interception>>('GET', '/api/v1/interceptions?limit=10', tb.adminKey);
      assert.equal(page.body.items.filter((r) => r.userId === dev.user.id).length, 2, 'no record was lost');
      assert.equal(tb.bridge.recorder.auditState().dropped, 0);
    } finally {
      await outage(adminUrl, db, false);
      await tb.close();
    }
  });
});
