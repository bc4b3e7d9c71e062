import assert from 'node:assert/strict';
import { type Backoff, backoffDelay, type ConnectionState, step } from '../../extension/live/machine';
import { CLOSE_CODES } from '../../shared/protocol';

const fixed = (r: number): Backoff => ({ baseMs: 1000, maxMs: 30_000, random: () => r });
const NOW = 1_000_000;

function drive(inputs: Parameters<typeof step>[1][], b = fixed(0.5)) {
  let state: ConnectionState = { status: 'signedOut' };
  const effects: ReturnType<typeof step>['effects'][] = [];
  for (const i of inputs) {
    const r = step(state, i, b, NOW);
    state = r.state;
    effects.push(r.effects);
  }
  return { state, effects };
}

const lost = { type: 'closed', code: 1006, reason: '', at: NOW } as const;

describe('extension: live connection state machine', () => {
  it('start opens a socket; hello makes it live', () => {
    const a = step({ status: 'signedOut' }, { type: 'start' }, fixed(0), NOW);
    assert.deepEqual(a.state, { status: 'connecting' });
    assert.deepEqual(a.effects, [{ type: 'open' }]);
    const b = step(a.state, { type: 'hello', at: NOW }, fixed(0), NOW);
    assert.deepEqual(b.state, { status: 'live', since: NOW });
    assert.deepEqual(b.effects, []);
  });

  it('backoff doubles from the base up to the cap, with half of each delay random (equal jitter)', () => {
    const lo = [1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, fixed(0)));
    const hi = [1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, fixed(0.999999)));
    assert.deepEqual(lo, [500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    assert.deepEqual(hi, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    // Two clients with different random draws come back at different times.
    assert.notEqual(backoffDelay(3, fixed(0.1)), backoffDelay(3, fixed(0.9)));
  });

  it('network loss goes to reconnecting with a growing delay, and a hello recovers', () => {
    const { state, effects } = drive([
      { type: 'start' },
      { type: 'hello', at: NOW },
      lost,
      { type: 'retry' },
      lost,
      { type: 'retry' },
      lost,
    ]);
    assert.equal(state.status, 'reconnecting');
    assert.equal(state.status === 'reconnecting' && state.attempt, 3);
    const delays = effects.flat().flatMap((e) => (e.type === 'schedule' ? [e.delayMs] : []));
    assert.deepEqual(delays, [750, 1500, 3000]);
    assert.equal(effects.flat().filter((e) => e.type === 'open').length, 3);
    assert.equal(state.status === 'reconnecting' && state.lastError, 'connection lost');

    const back = step(step(state, { type: 'retry' }, fixed(0.5), NOW).state, { type: 'hello', at: NOW + 5 });
    assert.deepEqual(back.state, { status: 'live', since: NOW + 5, failures: 3 });
    // After recovering (live longer than the longest wait), the next loss starts again from the first delay.
    const later = NOW + 5 + 30_000;
    const again = step(back.state, { ...lost, at: later }, fixed(0.5), later);
    assert.equal(again.state.status === 'reconnecting' && again.state.attempt, 1);
  });

  it('a socket dropped right after its hello (a bridge in a crash loop, a proxy that cuts) keeps backing off', () => {
    const { state, effects } = drive([
      { type: 'start' },
      { type: 'hello', at: NOW },
      lost,
      { type: 'retry' },
      { type: 'hello', at: NOW + 10 },
      { ...lost, at: NOW + 20 },
      { type: 'retry' },
      { type: 'hello', at: NOW + 30 },
      { ...lost, at: NOW + 40 },
    ]);
    assert.equal(state.status === 'reconnecting' && state.attempt, 3);
    const delays = effects.flat().flatMap((e) => (e.type === 'schedule' ? [e.delayMs] : []));
    assert.deepEqual(delays, [750, 1500, 3000], 'not 750 ms every time');
  });

  it('a refused key (4001) stops retrying and asks to sign in again', () => {
    const { state, effects } = drive([
      { type: 'start' },
      { type: 'closed', code: CLOSE_CODES.unauthorized.code, reason: 'The key was revoked.', at: NOW },
    ]);
    assert.deepEqual(state, { status: 'error', message: 'The key was revoked.', needsSignIn: true });
    assert.deepEqual(effects[1], [{ type: 'signInAgain', message: 'The key was revoked.' }]);
    // Nothing brings it back by itself: a timer firing or another close changes nothing.
    for (const input of [{ type: 'retry' }, { type: 'retryNow' }, lost] as const) {
      const r = step(state, input, fixed(0.5), NOW);
      assert.equal(r.state, state);
      assert.deepEqual(r.effects, []);
    }
    // Signing in again starts it.
    assert.deepEqual(step(state, { type: 'start' }).effects, [{ type: 'open' }]);
  });

  it('other final codes (4003, 4400) stop without asking to sign in; 4008 and 1001 reconnect', () => {
    for (const code of [4003, 4400]) {
      const r = drive([{ type: 'start' }, { type: 'closed', code, reason: 'nope', at: NOW }]);
      assert.deepEqual(r.state, { status: 'error', message: 'nope', needsSignIn: false });
      assert.deepEqual(r.effects[1], []);
    }
    for (const code of [4008, 1001, 1011]) {
      const r = drive([{ type: 'start' }, { type: 'closed', code, reason: '', at: NOW }]);
      assert.equal(r.state.status, 'reconnecting', String(code));
    }
  });

  it('too many bad keys (4029) waits at least as long as the close notice said', () => {
    const r = drive([
      { type: 'start' },
      { type: 'closed', code: 4029, reason: 'Too many invalid keys.', at: NOW, retryAfterMs: 42_000 },
    ]);
    assert.deepEqual(r.effects[1], [{ type: 'schedule', delayMs: 42_000 }]);
    assert.equal(r.state.status === 'reconnecting' && r.state.retryAt, NOW + 42_000);
  });

  it('a close notice asking for more than an hour waits an hour: a timer past 2^31 ms would fire at once, in a loop', () => {
    const r = drive([
      { type: 'start' },
      {
        type: 'closed',
        code: 4029,
        reason: 'Too many invalid keys.',
        at: NOW,
        retryAfterMs: 3_000_000_000_000,
      },
    ]);
    assert.deepEqual(r.effects[1], [{ type: 'schedule', delayMs: 3_600_000 }]);
    const inf = drive([
      { type: 'start' },
      {
        type: 'closed',
        code: 4029,
        reason: 'Too many invalid keys.',
        at: NOW,
        retryAfterMs: Number.POSITIVE_INFINITY,
      },
    ]);
    assert.deepEqual(inf.effects[1], [{ type: 'schedule', delayMs: 3_600_000 }]);
  });

  it('4029 without a close notice (an older bridge) waits the longest backoff, whatever the reason text', () => {
    const r = drive([
      { type: 'start' },
      { type: 'closed', code: 4029, reason: 'Too many invalid keys; retry in 2s.', at: NOW },
    ]);
    assert.deepEqual(r.effects[1], [{ type: 'schedule', delayMs: 30_000 }]);
  });

  it('retryNow skips the wait; stop cancels the timer and closes from any state', () => {
    const waiting = drive([{ type: 'start' }, lost]).state;
    assert.deepEqual(step(waiting, { type: 'retryNow' }).effects, [
      { type: 'cancelTimer' },
      { type: 'open' },
    ]);
    for (const s of [waiting, { status: 'live', since: 1 } as const, { status: 'connecting' } as const]) {
      const r = step(s, { type: 'stop' });
      assert.deepEqual(r.state, { status: 'signedOut' });
      assert.deepEqual(r.effects, [{ type: 'cancelTimer' }, { type: 'close' }]);
    }
    // A socket closing after sign-out is ignored.
    assert.deepEqual(step({ status: 'signedOut' }, lost).effects, []);
  });
});
