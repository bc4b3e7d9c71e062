import assert from 'node:assert/strict';
import { BridgeModel, MAX_ITEMS, type ModelChange } from '../../extension/model/bridge-model';
import { ALICE, budget, ended, record, ref, usage, usageMe } from './fixtures';

const AT = '2026-03-10T10:00:00.000Z';

function model(): { m: BridgeModel; changes: ModelChange[] } {
  const m = new BridgeModel();
  const changes: ModelChange[] = [];
  m.onDidChange((c) => changes.push(c));
  m.apply({ type: 'hello', protocolVersion: 1, user: ALICE, serverTime: AT, heartbeatMs: 30_000 });
  return { m, changes };
}

describe('extension: the model, fed by seeds and live events', () => {
  it('an ended interception adds its tokens and cost to the period, per model, and fires "spend" first', () => {
    const { m, changes } = model();
    m.seedSpend(usageMe());
    changes.length = 0;
    m.apply(ended('i1', AT, usage(100, 50, 10, 5), 0.25));
    m.apply(ended('i2', AT, usage(10, 5), null, { model: 'gpt-5' }));
    const s = m.spend!;
    assert.equal(s.requests, 4);
    assert.deepEqual(s.usage, usage(1110, 255, 10, 5));
    assert.equal(s.costUsd, 0.75);
    assert.equal(s.unpricedRequests, 1);
    assert.deepEqual(s.byModel.get('claude-sonnet-4-6'), {
      model: 'claude-sonnet-4-6',
      requests: 3,
      tokens: 1200 + 165,
      costUsd: 0.75,
      unpricedRequests: 0,
    });
    assert.deepEqual(s.byModel.get('gpt-5'), {
      model: 'gpt-5',
      requests: 1,
      tokens: 15,
      costUsd: 0,
      unpricedRequests: 1,
    });
    assert.deepEqual(changes.slice(0, 2), ['spend', 'interceptions']);
  });

  it('counts an interception once even if its ended event arrives twice (a reconnect), and ignores other periods and users', () => {
    const { m } = model();
    m.seedSpend(usageMe());
    const e = ended('i1', AT, usage(100, 0), 0.1);
    m.apply(e);
    m.apply(e);
    m.apply(ended('i2', '2026-03-09T23:59:59.000Z', usage(100, 0), 0.1));
    m.apply(ended('i3', AT, usage(100, 0), 0.1, { userId: 'u_bob', userEmail: 'bob@example.com' }));
    assert.equal(m.spend!.requests, 3);
    assert.equal(m.spend!.costUsd, 0.6);
  });

  it('a request counts in the period it started in, as the bridge counts it: a stream across midnight UTC is the day before', () => {
    const { m } = model();
    m.seedSpend(usageMe({ budgets: [budget(10, 0)] }));
    // Started 23:59:40 on the 9th, ended 20 s into the 10th: the bridge charged it to the 9th.
    m.apply({ ...ended('late', '2026-03-10T00:00:20.000Z', usage(100, 0), 0.3), durationMs: 40_000 });
    assert.equal(m.spend!.requests, 2);
    assert.equal(m.spend!.costUsd, 0.5);
    assert.equal(m.spend!.budgets[0]!.spentUsd, 0);
    // Started 23:59:50 on the 10th, ended after midnight: today's, though its end is not.
    m.apply({ ...ended('spans', '2026-03-11T00:00:05.000Z', usage(100, 0), 0.25), durationMs: 15_000 });
    assert.equal(m.spend!.requests, 3);
    assert.equal(m.spend!.costUsd, 0.75);
    assert.equal(m.spend!.budgets[0]!.spentUsd, 0.25);
    // A started event gives the exact start (it wins over end minus duration).
    m.apply({ type: 'interception.started', ...ref('known'), at: '2026-03-09T23:59:59.000Z' });
    m.apply({ ...ended('known', '2026-03-10T00:00:01.000Z', usage(1, 0), 1), durationMs: 1 });
    assert.equal(m.spend!.requests, 3, 'started on the 9th');
  });

  it("a request paid with the user's own key counts its tokens but not the spend or the budgets (billedTo user)", () => {
    const { m } = model();
    m.seedSpend(usageMe({ budgets: [budget(5, 1)] }));
    m.apply({ ...ended('i1', AT, usage(100, 50), 0.4), billedTo: 'user' });
    const s = m.spend!;
    assert.equal(s.requests, 3);
    assert.deepEqual(s.usage, usage(1100, 250));
    assert.equal(s.costUsd, 0.5, 'as /api/v1/usage/me says: the organisation’s cost');
    assert.equal(s.unpricedRequests, 0);
    assert.equal(s.budgets[0]!.spentUsd, 1);
  });

  it('says when a seed raced with live events (then the caller fetches again)', () => {
    const { m } = model();
    m.seedSpend(usageMe());
    m.beginSeed();
    assert.equal(m.seedSpend(usageMe()), false);
    m.beginSeed();
    m.apply(ended('i9', AT, usage(1, 1), 0.01));
    assert.equal(m.seedSpend(usageMe()), true);
  });

  it('builds an interception from started, progress, tool.call and ended events', () => {
    const { m } = model();
    m.apply({ type: 'interception.started', ...ref('i1'), at: AT });
    assert.equal(m.items[0]?.status, 'running');
    m.apply({ type: 'interception.progress', ...ref('i1'), at: AT, usage: usage(50, 3) });
    assert.deepEqual(m.items[0]?.usage, usage(50, 3));
    const call = {
      type: 'tool.call' as const,
      ...ref('i1'),
      at: AT,
      callId: 'c1',
      name: 'read_file',
      server: 'files',
      injected: true,
      inputPreview: '{"path":"a"}',
    };
    m.apply(call);
    m.apply(call);
    m.apply(ended('i1', '2026-03-10T10:00:02.000Z', usage(50, 20), 0.02));
    const item = m.items[0]!;
    assert.equal(item.status, 'ok');
    assert.equal(item.startedAt, AT);
    assert.deepEqual(item.usage, usage(50, 20));
    assert.equal(item.costUsd, 0.02);
    assert.deepEqual(
      item.toolCalls.map((c) => [c.name, c.server, c.injected]),
      [['read_file', 'files', true]],
    );
    // A late progress event does not overwrite the final usage.
    m.apply({ type: 'interception.progress', ...ref('i1'), at: AT, usage: usage(1, 1) });
    assert.deepEqual(m.items[0]?.usage, usage(50, 20));
  });

  it('merges the history with live items, newest first, records winning, at most MAX_ITEMS', () => {
    const { m } = model();
    m.apply({ type: 'interception.started', ...ref('live'), at: '2026-03-10T11:00:00.000Z' });
    m.apply({ type: 'interception.started', ...ref('r2'), at: '2026-03-10T09:30:00.000Z' });
    m.seedHistory([
      record('r2', {
        startedAt: '2026-03-10T09:30:00.000Z',
        toolCalls: [
          { id: 'c1', name: 'grep', server: null, input: { q: 'x'.repeat(500) }, injected: false, at: AT },
        ],
      }),
      record('r1'),
    ]);
    assert.deepEqual(
      m.items.map((i) => i.id),
      ['live', 'r2', 'r1'],
    );
    assert.equal(m.items[1]?.status, 'ok');
    assert.ok(m.items[1]!.toolCalls[0]!.inputPreview.length <= 200);
    m.seedHistory(
      Array.from({ length: MAX_ITEMS + 10 }, (_, i) =>
        record(`x${i}`, { startedAt: new Date(Date.UTC(2026, 2, 1, 0, i)).toISOString() }),
      ),
    );
    assert.equal(m.items.length, MAX_ITEMS);
  });

  it('a budget alert raises the spent amount; nearestBudget picks the fullest budget', () => {
    const { m } = model();
    m.seedSpend(usageMe({ budgets: [budget(10, 2), { ...budget(1, 0.5), id: 'b2' }] }));
    assert.deepEqual([m.nearestBudget()?.budget.id, m.nearestBudget()?.fraction], ['b2', 0.5]);
    m.apply({
      type: 'budget.alert',
      alert: {
        id: 'a1',
        kind: 'budget',
        rule: 'budget_threshold',
        at: AT,
        userId: ALICE.id,
        userEmail: ALICE.email,
        team: null,
        observed: 9,
        baseline: 10,
        unit: 'usd',
        message: '90% of the budget',
        budgetId: 'b1',
      },
    });
    assert.deepEqual([m.nearestBudget()?.budget.id, m.nearestBudget()?.fraction], ['b1', 0.9]);
    assert.equal(m.lastAlert?.id, 'a1');
  });

  it('reset (sign-out) forgets everything about the last user', () => {
    const { m, changes } = model();
    m.seedSpend(usageMe());
    m.apply(ended('i1', AT, usage(1, 1), 0.01));
    m.reset();
    assert.equal(m.spend, null);
    assert.deepEqual(m.items, []);
    assert.equal(m.user, null);
    assert.equal(changes.at(-1), 'reset');
  });
});
