import assert from 'node:assert/strict';
import { errors as undiciErrors } from 'undici';
import { upstreamFailure } from '../../server/proxy/upstream';

describe('upstreamFailure', () => {
  it('takes a request the HTTP client refused before sending for the request’s fault (400), not the provider’s', () => {
    for (const err of [
      new undiciErrors.NotSupportedError('expect header not supported'),
      new undiciErrors.InvalidArgumentError('invalid connection header'),
    ]) {
      const e = upstreamFailure(err);
      assert.equal(e.code, 'invalid_request');
      assert.equal(e.status, 400);
      assert.match(e.message, /cannot be sent to the provider as it came/);
    }
  });

  it('keeps a refused connection, and anything that breaks mid-answer, the provider’s (502)', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    assert.equal(upstreamFailure(refused).code, 'upstream_unreachable');
    assert.equal(upstreamFailure(refused).status, 502);
    const mid = upstreamFailure(new undiciErrors.InvalidArgumentError('x'), true);
    assert.equal(mid.code, 'upstream_unreachable');
  });
});
