import assert from 'node:assert/strict';
import { Emitter } from '../../extension/emitter';

describe('extension: the event emitter', () => {
  it('a listener that throws neither keeps the event from the others nor throws into whoever fired', () => {
    const errors: unknown[] = [];
    const e = new Emitter<number>((err) => errors.push(err));
    const heard: number[] = [];
    e.event(() => {
      throw new Error('a render failed');
    });
    e.event((n) => heard.push(n));
    assert.doesNotThrow(() => e.fire(1));
    e.fire(2);
    assert.deepEqual(heard, [1, 2]);
    assert.deepEqual(
      errors.map((x) => (x as Error).message),
      ['a render failed', 'a render failed'],
    );
  });
});
