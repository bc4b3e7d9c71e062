import assert from 'node:assert/strict';
import type { BudgetStatus } from '../../shared/spend';
import { AnthropicMock, DEFAULT_USAGE } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

/** USD per million tokens of claude-sonnet-4-6: input, output, cache read, cache write. */
const PRICE = { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 };
/** What one answer of the mock costs. */
const COST =
  (DEFAULT_USAGE.input_tokens * PRICE.input +
    DEFAULT_USAGE.output_tokens * PRICE.output +
    DEFAULT_USAGE.cache_read_input_tokens * PRICE.cacheRead +
    DEFAULT_USAGE.cache_creation_input_tokens * PRICE.cacheWrite) /
  1e6;
const MAX_TOKENS = 50;
const BODY = JSON.stringify({
  model: 'claude-sonnet-4-6',
  max_tokens: MAX_TOKENS,
  messages: [{ role: 'user', content: 'spend a little' }],
});
/**
 * What the bridge reserves for one such request (server/spend/governance.ts: the body as input,
 * priced as a cache write where that costs more, and the output cap as output), rounded up.
 */
const ESTIMATE =
  (Math.ceil(Buffer.byteLength(BODY) / 3) * Math.max(PRICE.input, PRICE.cacheWrite) +
    MAX_TOKENS * PRICE.output) /
    1e6 +
  1e-9;
/** The team's budget: large enough that leases take a share of it, not one estimate each. */
const LIMIT = 120 * COST;

async function ask(tb: TestBridge, key: string): Promise<number> {
  const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: BODY,
  });
  await res.arrayBuffer();
  return res.status;
}

describe('budget leases: two replicas under concurrent load on one PostgreSQL', function () {
  this.timeout(120_000);
  let mock: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    const env = { AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('leases') };
    a = await startBridge(mock.url, env);
    b = await startBridge(mock.url, env, a.dataDir);
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await mock.stop();
  });

  it('keeps the team within its limit plus one request, and the ledger exact once leases are returned', async () => {
    assert.ok(ESTIMATE > COST, 'the estimate bounds what a request costs');
    const one = await a.addUser('one@example.com', { team: 'squad' });
    const two = await a.addUser('two@example.com', { team: 'squad' });
    const put = await a.api<BudgetStatus>('PUT', '/api/v1/budgets', a.adminKey, {
      scope: 'team',
      subject: 'squad',
      period: 'month',
      limitUsd: LIMIT,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));

    let served = 0;
    let refused = 0;
    let quiet = 0;
    // Rounds of concurrent requests from both users on both replicas, until two rounds in a row
    // (the second after every lease went back) admit nothing.
    for (let round = 0; round < 40 && quiet < 2; round++) {
      const statuses = await Promise.all(
        Array.from({ length: 24 }, (_, i) => ask(i % 2 ? a : b, i % 4 < 2 ? one.key : two.key)),
      );
      const ok = statuses.filter((s) => s === 200).length;
      served += ok;
      refused += statuses.filter((s) => s === 429).length;
      assert.equal(ok + statuses.filter((s) => s === 429).length, statuses.length, `${statuses}`);
      if (ok === 0) {
        quiet++;
        // Idle leases go back within two renewal ticks.
        await new Promise((r) => setTimeout(r, 2500));
      } else quiet = 0;
    }
    assert.ok(refused > 0, 'the budget was reached');
    const spent = served * COST;
    assert.ok(
      spent <= LIMIT + ESTIMATE,
      `spent ${spent} > limit ${LIMIT} + one estimate ${ESTIMATE} (${served} served)`,
    );
    assert.ok(spent >= LIMIT - ESTIMATE, `only ${served} served: headroom was left unused`);

    // Every lease settles: nothing stays reserved, and the ledger holds exactly what was spent.
    await eventually(
      async () => {
        const s = await b.api<BudgetStatus>('GET', `/api/v1/budgets/${put.body.id}`, b.adminKey);
        assert.equal(s.body.reservedUsd, 0);
        assert.ok(Math.abs(s.body.spentUsd - spent) < 1e-6, `ledger ${s.body.spentUsd} vs ${spent}`);
        return true;
      },
      { what: 'the leases to be returned', timeoutMs: 5000, intervalMs: 100 },
    );
  });
});
