import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { idKey } from '../../server/store/embedded/record-index';

/** What idKey computed before it was a loop: the regex form it must match exactly. */
function regexIdKey(id: string): number {
  const hex = id.replace(/[^0-9a-f]/gi, '').slice(-13);
  return hex.length === 0 ? -1 : Number.parseInt(hex, 16);
}

describe('the embedded record index', () => {
  it('keys an id by its last 13 hex digits exactly as the regex form did', () => {
    const ids = [
      '',
      'int_',
      'gw_',
      'int_ABC',
      'int_12',
      'zz-ff',
      'no hex here: ghijk',
      ...Array.from({ length: 2000 }, () => `int_${randomUUID()}`),
      ...Array.from({ length: 200 }, () => randomUUID().toUpperCase()),
      ...Array.from({ length: 200 }, () => `x${randomUUID().replace(/-/g, '')}${randomUUID().slice(0, 5)}`),
    ];
    for (const id of ids) assert.equal(idKey(id), regexIdKey(id), id);
    assert.equal(idKey('int_'), -1);
    assert.ok(Number.isSafeInteger(idKey(`int_${randomUUID()}`)));
  });
});
