import assert from 'node:assert/strict';
import type { Principal } from '../../server/core/principal';
import { isBridgeError } from '../../server/errors';
import { RateLimiter } from '../../server/spend/rate-limits';
import type { RateCount, Store } from '../../server/store/types';

/** Limits here are the defaults: the limiter reads no document, so it needs no store behind it. */
const NO_STORE = {} as Store;

function principal(n: number): Principal {
  return {
    user: { id: `usr_${String(n).padStart(20, '0')}`, email: `u${n}@example.com` },
    key: { id: `key_${n}`, prefix: `abk_${n}` },
  } as Principal;
}

function refused(limiter: RateLimiter, p: Principal): string | null {
  try {
    limiter.admit(`int_${Math.random()}`, p);
    return null;
  } catch (err) {
    assert.ok(isBridgeError(err));
    return err.code;
  }
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('rate limits shared between replicas (RateLimiter.share / heard)', () => {
  it("holds a member to one limit over two replicas once each has heard the other's count", async () => {
    const x = new RateLimiter(NO_STORE, { rpm: 3, tpm: 0 });
    const y = new RateLimiter(NO_STORE, { rpm: 3, tpm: 0 });
    const stops = [x.share((c) => y.heard(c), 5), y.share((c) => x.heard(c), 5)];
    try {
      const p = principal(1);
      assert.equal(refused(x, p), null);
      assert.equal(refused(x, p), null);
      assert.equal(refused(y, p), null);
      await tick(40);
      assert.equal(refused(x, p), 'rate_limited');
      assert.equal(refused(y, p), 'rate_limited');
      // Another member's window is their own.
      assert.equal(refused(y, principal(2)), null);
    } finally {
      for (const stop of stops) stop();
    }
  });

  it('sends tokens too, and what is left when it stops, each notification inside an inline NOTIFY', () => {
    const x = new RateLimiter(NO_STORE, { rpm: 1000, tpm: 1000 });
    const sent: RateCount[][] = [];
    const stop = x.share((c) => sent.push(c), 60_000);
    for (let i = 0; i < 500; i++) x.admit(`int_${i}`, principal(i));
    x.settle('int_0', 42);
    stop();
    assert.ok(sent.length > 1, 'split');
    for (const c of sent) {
      // What the change feed wraps it in: {"from":"<uuid>","change":{"kind":"rate","counts":…}}.
      const inline = JSON.stringify({ from: crypto.randomUUID(), change: { kind: 'rate', counts: c } });
      assert.ok(Buffer.byteLength(inline) <= 7_000, `${Buffer.byteLength(inline)} bytes`);
    }
    const all = sent.flat();
    assert.equal(all.length, 500);
    assert.deepEqual(
      all.find((c) => c[0] === `default:${principal(0).user.id}`),
      [`default:${principal(0).user.id}`, 1, 42],
    );
    // Stopped: nothing is gathered any more.
    x.admit('int_after', principal(0));
    assert.equal(sent.flat().length, 500);
  });

  it('skips what it cannot read from another replica, and counts what it can', () => {
    const x = new RateLimiter(NO_STORE, { rpm: 2, tpm: 0 });
    const p = principal(7);
    for (const junk of [
      'x',
      null,
      [[1, 2, 3]],
      [[`default:${principal(7).user.id}`, -5, Number.NaN]],
      [[`default:${principal(7).user.id}`]],
    ])
      x.heard(junk);
    assert.equal(refused(x, p), null, 'nothing malformed was counted');
    x.heard([[`default:${principal(7).user.id}`, 1, 0]]);
    assert.equal(refused(x, p), 'rate_limited');
  });
});

describe('tokens per minute held by requests in flight (RateLimiter.admit with an estimate)', () => {
  it('refuses once the window and what running requests hold reach the limit; a settled request leaves its real count; one running past an hour lets go of its hold, its usage counted when it ends', () => {
    let now = 1_000_000;
    const limiter = new RateLimiter(NO_STORE, { rpm: 0, tpm: 100 }, () => now);
    const p = principal(7);
    const window = `default:${p.user.id}`;
    limiter.admit('int_a', p, 60);
    limiter.admit('int_b', p, 60);
    assert.equal(limiter.heldIn(window), 120);
    assert.throws(
      () => limiter.admit('int_c', p, 60),
      (err: unknown) => {
        assert.ok(isBridgeError(err) && err.code === 'rate_limited');
        assert.equal(err.headers?.['retry-after'], '1');
        return true;
      },
    );
    limiter.settle('int_a', 10);
    assert.equal(limiter.heldIn(window), 60);
    limiter.admit('int_d', p, 60);
    // int_b and int_d run on past an hour: they hold nothing from then on.
    now += 61 * 60_000;
    limiter.admit('int_e', p, 5);
    assert.equal(limiter.heldIn(window), 5);
    // Their usage still counts when they end.
    limiter.settle('int_b', 60);
    limiter.settle('int_d', 40);
    assert.throws(() => limiter.admit('int_f', p, 1), /100 tokens per minute/);
  });
});
