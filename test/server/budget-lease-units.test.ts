import assert from 'node:assert/strict';
import type { AlertService } from '../../server/alerts/alert-service';
import { BudgetLeases } from '../../server/spend/budget-leases';
import { Budgets } from '../../server/spend/budgets';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { BudgetClaim, NewInterception, Store } from '../../server/store/types';
import { tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';

const claim = (over: Partial<BudgetClaim> = {}): BudgetClaim => ({
  budgetId: 'bud_team',
  periodStart: '2026-03-01T00:00:00.000Z',
  limitUsd: 10,
  block: true,
  thresholds: [0.5, 1],
  scope: { team: 'red' },
  ...over,
});
const rec = { id: 'int_x', userId: 'usr_1' } as NewInterception;
const near = (a: number, b: number): void => assert.ok(Math.abs(a - b) < 1e-9, `${a} vs ${b}`);

/** The store's lease and settlement calls, counted (the database round trips a replica would make). */
function counting(store: Store): { store: Store; leases: () => number; settlements: () => number } {
  let leases = 0;
  let settlements = 0;
  const wrapped = Object.create(store) as Store;
  wrapped.leaseBudget = (...a) => {
    leases++;
    return store.leaseBudget(...a);
  };
  wrapped.settleBudgets = (...a) => {
    settlements++;
    return store.settleBudgets(...a);
  };
  return { store: wrapped, leases: () => leases, settlements: () => settlements };
}

describe('budget leases (one replica, against the embedded store)', () => {
  let store: EmbeddedStore;
  const errors: unknown[] = [];
  const onError = (err: unknown): void => {
    errors.push(err);
  };
  beforeEach(async () => {
    errors.length = 0;
    store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
  });
  afterEach(async () => {
    await store.close();
    assert.deepEqual(errors, [], 'no lease or settlement failed');
  });

  it('admits many requests on one lease and charges them to the ledger when it settles', async () => {
    const c = counting(store);
    const crossed: number[] = [];
    const leases = new BudgetLeases<string>(c.store, (_t, s) => crossed.push(s.crossed!), onError, 60_000);
    const tickets = [];
    for (let i = 0; i < 50; i++) {
      const a = await leases.admit([{ claim: claim(), tag: 'team' }], 0.01);
      assert.equal(a.kind, 'admitted');
      if (a.kind === 'admitted') tickets.push(a.ticket);
    }
    assert.equal(c.leases(), 1, 'one lease: 10 % of $10 holds 50 estimates of $0.01');
    near((await store.budgetLedgers([claim()]))[0]!.reservedUsd, 1);
    for (const t of tickets) leases.finish(t, 0.125, rec);
    assert.equal(c.settlements(), 0, 'nothing is written per request');
    await leases.flush();
    const [l] = await store.budgetLedgers([claim()]);
    near(l!.spentUsd, 6.25);
    near(l!.reservedUsd, 0);
    assert.deepEqual(crossed, [0.5], 'the settlement raised the threshold it crossed');
  });

  it('takes a new lease when one is used up, after the old one returned its headroom', async () => {
    const c = counting(store);
    const leases = new BudgetLeases<string>(c.store, () => undefined, onError, 60_000);
    const small = claim({ limitUsd: 0.05 });
    // The lease is one estimate (10 % of $0.05 is less): one request each.
    const first = await leases.admit([{ claim: small, tag: 't' }], 0.02);
    assert.equal(first.kind, 'admitted');
    if (first.kind === 'admitted') leases.finish(first.ticket, 0.02, rec);
    const second = await leases.admit([{ claim: small, tag: 't' }], 0.02);
    assert.equal(second.kind, 'admitted');
    assert.equal(c.leases(), 2);
    assert.equal(c.settlements(), 1);
    near((await store.budgetLedgers([small]))[0]!.spentUsd, 0.02);
    if (second.kind === 'admitted') leases.finish(second.ticket, 0.02, rec);
    const third = await leases.admit([{ claim: small, tag: 't' }], 0.02);
    assert.equal(third.kind, 'admitted', '$0.01 left: one more request, as without leases');
    if (third.kind === 'admitted') leases.finish(third.ticket, 0.02, rec);
    const refused = await leases.admit([{ claim: small, tag: 't' }], 0.02);
    assert.equal(refused.kind, 'refused');
    if (refused.kind === 'refused') near(refused.ledger.spentUsd, 0.06);
  });

  it('admits on every claim or none, and leases anew when a budget’s limit changes', async () => {
    const c = counting(store);
    const leases = new BudgetLeases<string>(c.store, () => undefined, onError, 60_000);
    const spent = claim({ budgetId: 'bud_user', limitUsd: 0.01, scope: { userId: 'usr_1' } });
    await store.settleBudgets('int_0', [{ ...spent, costUsd: 0.01 }]);
    const both = await leases.admit(
      [
        { claim: claim(), tag: 'team' },
        { claim: spent, tag: 'user' },
      ],
      0.01,
    );
    assert.equal(both.kind, 'refused');
    if (both.kind === 'refused') assert.equal(both.index, 1);
    const lowered = await leases.admit([{ claim: claim({ limitUsd: 2 }), tag: 'team' }], 0.01);
    assert.equal(lowered.kind, 'admitted');
    assert.equal(c.leases(), 3, 'the team lease, the refused user lease, the lease for the new limit');
    near((await store.budgetLedgers([claim()]))[0]!.reservedUsd, 0.2);
  });

  it('settles a closed lease without a request whose end never comes, and charges that one when it does', async () => {
    const c = counting(store);
    const leases = new BudgetLeases<string>(c.store, () => undefined, onError, 10, 3);
    const stuck = await leases.admit([{ claim: claim(), tag: 't' }], 0.01);
    const done = await leases.admit([{ claim: claim(), tag: 't' }], 0.01);
    assert.ok(stuck.kind === 'admitted' && done.kind === 'admitted');
    leases.finish(done.ticket, 0.25, rec);
    await leases.flush();
    assert.equal(c.settlements(), 0, 'a lease waits for its running requests...');
    await eventually(() => c.settlements() === 1, { what: '...for a few ticks at most' });
    const [l] = await store.budgetLedgers([claim()]);
    near(l!.spentUsd, 0.25);
    near(l!.reservedUsd, 0);
    leases.finish(stuck.ticket, 0.5, rec);
    await leases.flush();
    near((await store.budgetLedgers([claim()]))[0]!.spentUsd, 0.75);
  });

  it('renews a lease in use in the background and returns an idle one', async () => {
    const c = counting(store);
    const leases = new BudgetLeases<string>(c.store, () => undefined, onError, 20);
    const a = await leases.admit([{ claim: claim(), tag: 't' }], 0.01);
    assert.equal(a.kind, 'admitted');
    if (a.kind === 'admitted') leases.finish(a.ticket, 0.3, rec);
    await eventually(() => c.leases() === 2 && c.settlements() === 1, { what: 'the renewal' });
    near((await store.budgetLedgers([claim()]))[0]!.spentUsd, 0.3);
    // Nothing used the new lease: it goes back.
    await eventually(() => c.settlements() === 2, { what: 'the idle lease to be returned' });
    near((await store.budgetLedgers([claim()]))[0]!.reservedUsd, 0);
    assert.equal(c.leases(), 2);
  });
});

describe('a request that runs past the end of its budget period', () => {
  it('is charged to the period it started in (where it was admitted), not to none', async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    try {
      let now = new Date('2026-03-01T23:59:50.000Z');
      const raised: unknown[] = [];
      const alerts = { raise: (a: unknown) => void raised.push(a) } as unknown as AlertService;
      const budgets = new Budgets(store, alerts, () => now);
      const b = await budgets.put(
        { scope: 'org', subject: '*', period: 'day', limitUsd: 100, action: 'block' },
        'org',
      );
      const spender = { id: 'usr_1', team: null, sessionId: null };
      await budgets.reserve('int_late', spender, 0.5);
      // It ends after midnight UTC: a new daily period.
      now = new Date('2026-03-02T00:00:10.000Z');
      budgets.settle({
        ...rec,
        id: 'int_late',
        userId: 'usr_1',
        team: null,
        sessionId: null,
        startedAt: '2026-03-01T23:59:50.000Z',
        costUsd: 60,
      } as NewInterception);
      await budgets.settled();
      const periodOf = (day: string): BudgetClaim =>
        claim({ budgetId: b.id, periodStart: `${day}T00:00:00.000Z`, limitUsd: 100, scope: {} });
      const [started, next] = await store.budgetLedgers([periodOf('2026-03-01'), periodOf('2026-03-02')]);
      near(started!.spentUsd, 60);
      // It crossed 50 % of a day that is over: no alert stamped today, which would read as today's.
      assert.deepEqual(raised, []);
      near(started!.reservedUsd, 0);
      near(next!.spentUsd, 0);
    } finally {
      await store.close();
    }
  });
});

describe('a settlement the store fails', () => {
  it('is tried again: the lease returns its headroom and its cost reaches the ledger', async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    try {
      const failing = Object.create(store) as Store;
      let refusals = 1;
      failing.settleBudgets = (...a) => {
        if (refusals-- > 0) return Promise.reject(new Error('deadlock detected'));
        return store.settleBudgets(...a);
      };
      const errors: unknown[] = [];
      const leases = new BudgetLeases<string>(
        failing,
        () => undefined,
        (e) => errors.push(e),
        60_000,
      );
      const a = await leases.admit([{ claim: claim(), tag: 'team' }], 0.01);
      assert.equal(a.kind, 'admitted');
      if (a.kind === 'admitted') leases.finish(a.ticket, 0.75, rec);
      await leases.flush();
      const [l] = await store.budgetLedgers([claim()]);
      near(l!.spentUsd, 0.75);
      near(l!.reservedUsd, 0);
      assert.equal(errors.length, 1, 'the failure was reported');
    } finally {
      await store.close();
    }
  });

  it("is tried again for a request's own reservation too", async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    try {
      const failing = Object.create(store) as Store;
      let refusals = 2;
      failing.settleBudgets = (...a) => {
        if (refusals-- > 0) return Promise.reject(new Error('timeout exceeded when trying to connect'));
        return store.settleBudgets(...a);
      };
      const errors: unknown[] = [];
      const now = new Date('2026-03-01T12:00:00.000Z');
      const budgets = new Budgets(
        failing,
        {} as AlertService,
        () => now,
        (e) => errors.push(e),
      );
      const b = await budgets.put(
        { scope: 'org', subject: '*', period: 'day', limitUsd: 100, action: 'block' },
        'org',
      );
      const spender = { id: 'usr_1', team: null, sessionId: null };
      await budgets.reserve('int_r', spender, 0.5);
      budgets.settle({
        ...rec,
        id: 'int_r',
        userId: 'usr_1',
        team: null,
        sessionId: null,
        startedAt: now.toISOString(),
        costUsd: 3,
      } as NewInterception);
      await budgets.settled();
      const [l] = await store.budgetLedgers([
        claim({ budgetId: b.id, periodStart: '2026-03-01T00:00:00.000Z', limitUsd: 100, scope: {} }),
      ]);
      near(l!.spentUsd, 3);
      near(l!.reservedUsd, 0);
      assert.equal(errors.length, 2);
    } finally {
      await store.close();
    }
  });
});
