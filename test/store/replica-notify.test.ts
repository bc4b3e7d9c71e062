import assert from 'node:assert/strict';
import type pg from 'pg';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

/**
 * Makes every notification a replica sends apart from a write fail, as a pool busy for seconds or a
 * connection lost after the commit does: what the replica must still get to the others is what its
 * writes carry in their own statements.
 */
function failSeparateNotifications(tb: TestBridge): { refused: () => number; restore: () => void } {
  const pool = (tb.bridge.store as unknown as { pool: pg.Pool }).pool;
  const real = pool.query;
  let refused = 0;
  const patched = function (this: pg.Pool, config: unknown, ...rest: unknown[]) {
    if (
      typeof config === 'object' &&
      config !== null &&
      (config as { name?: string }).name === 'aibridge_notify'
    ) {
      refused++;
      return Promise.reject(new Error('timeout exceeded when trying to connect'));
    }
    return (real as (...a: unknown[]) => unknown).call(this, config, ...rest);
  };
  pool.query = patched as typeof pool.query;
  return { refused: () => refused, restore: () => (pool.query = real) };
}

describe('replicas on PostgreSQL: a change reaches the others with its write', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    const env = { AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('notify') };
    a = await startBridge(mock.url, env);
    b = await startBridge(mock.url, env, a.dataDir);
  });
  after(async () => {
    await b?.close();
    await a?.close();
    await mock.stop();
  });

  it('a key revoked, a user moved and a policy written while separate notifications fail reach the other replica within a second', async () => {
    const dev = await a.addUser('notify@example.com', { team: 'red' });
    assert.equal((await askMessages(b.url, dev.key)).status, 200, 'B has the key cached');
    const faults = failSeparateNotifications(a);
    try {
      // A policy for a team, and the user moved into it: B must hear of both.
      const put = await a.api('PUT', '/api/v1/teams/blue/models', a.adminKey, { allow: ['gpt-*'], deny: [] });
      assert.equal(put.status, 200);
      const moved = await a.api('PATCH', '/api/v1/users/notify%40example.com', a.adminKey, { team: 'blue' });
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      await eventually(async () => ((await askMessages(b.url, dev.key)).status === 403 ? true : undefined), {
        what: 'B to refuse the model for the team A moved the user to',
        timeoutMs: 1000,
        intervalMs: 20,
      });

      const revoked = await a.api('DELETE', `/api/v1/keys/${dev.keyId}`, a.adminKey);
      assert.equal(revoked.status, 200);
      await eventually(async () => ((await askMessages(b.url, dev.key)).status === 401 ? true : undefined), {
        what: 'B to refuse the key A revoked',
        timeoutMs: 1000,
        intervalMs: 20,
      });
    } finally {
      faults.restore();
    }
  });
});
