import assert from 'node:assert/strict';
import { clientResponseHeaders, upstreamRequestHeaders } from '../../server/proxy/headers';

describe('headers named by Connection', () => {
  it('are dropped per request, whatever the request before named (the last value is remembered)', () => {
    const h = (connection: string | undefined) => ({
      ...(connection === undefined ? {} : { connection }),
      'x-one': '1',
      'x-two': '2',
      'content-type': 'application/json',
    });
    const sent = (connection: string | undefined) =>
      Object.keys(upstreamRequestHeaders(h(connection))).sort();
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(sent('keep-alive, X-One'), ['accept-encoding', 'content-type', 'x-two']);
      assert.deepEqual(sent('keep-alive, X-One'), ['accept-encoding', 'content-type', 'x-two']);
      assert.deepEqual(sent('x-two'), ['accept-encoding', 'content-type', 'x-one']);
      assert.deepEqual(sent(undefined), ['accept-encoding', 'content-type', 'x-one', 'x-two']);
      assert.deepEqual(sent('keep-alive'), ['accept-encoding', 'content-type', 'x-one', 'x-two']);
    }
    const back = clientResponseHeaders(
      { connection: 'X-One, x-two', 'x-one': '1', 'x-two': '2', 'x-three': '3' },
      false,
    );
    assert.deepEqual(Object.keys(back), ['x-three']);
  });
});
