import assert from 'node:assert/strict';
import { BodyBudget, keylessAccount } from '../../server/http/body-budget';

/** Requests without a key (sign-in, device login, OAuth registration) hold little each, and one address little of all. */
describe('the request-body budget for requests without a key', () => {
  it('one client address holds at most a 64th of the keyless share (never less than two 16 KiB registrations): others still get theirs', () => {
    const budget = new BodyBudget(64 * 1024 * 1024);
    assert.equal(budget.keyless, 4 * 1024 * 1024);
    assert.equal(budget.keylessPerAddress, 64 * 1024);
    const a = keylessAccount('203.0.113.7');
    for (let i = 0; i < 4; i++) assert.equal(budget.take(a, 16 * 1024), 'ok');
    assert.equal(budget.take(a, 16 * 1024), 'keyless', 'a fifth silent registration from the same address');
    assert.equal(
      budget.take(keylessAccount('198.51.100.9'), 16 * 1024),
      'ok',
      'another address is not held by it',
    );
    budget.give(a, 16 * 1024);
    assert.equal(budget.take(a, 16 * 1024), 'ok', 'given back, taken again');
    // A member's body is not a keyless one.
    assert.equal(budget.take('usr_1', 8 * 1024 * 1024), 'ok');
  });

  it('a small budget still lets one address send two of the largest keyless bodies', () => {
    const budget = new BodyBudget(1024 * 1024);
    assert.equal(budget.keylessPerAddress, 32 * 1024);
    const a = keylessAccount('203.0.113.8');
    assert.equal(budget.take(a, 16_000), 'ok');
    assert.equal(budget.take(a, 16_000), 'ok');
    assert.equal(budget.take(a, 16_000), 'keyless');
  });
});
