import assert from 'node:assert/strict';
import { withoutUrlSecrets } from '../../server/core/url-secrets';
import { logError } from '../../server/http/log-errors';

describe('errors as logged', () => {
  it('mask the credentials of the URLs in their message, stack and causes, and keep the rest', () => {
    const cause = new Error(
      'connect ECONNREFUSED http://svc:SuperSecretPw@10.0.0.5:8080/mcp?token=urltok123&x=1',
    );
    const err = new Error('Error POSTing to http://svc:SuperSecretPw@10.0.0.5:8080/mcp?token=urltok123', {
      cause,
    });
    const logged = JSON.stringify(logError(err));
    assert.doesNotMatch(logged, /SuperSecretPw|urltok123/);
    assert.match(logged, /http:\/\/svc:\*\*\*@10\.0\.0\.5:8080\/mcp\?token=\*\*\*/);
    assert.match(logged, /&x=1/);
    assert.match(logged, /ECONNREFUSED/);
    assert.equal(
      withoutUrlSecrets('https://example.com/a?key=AIzaX&alt=sse'),
      'https://example.com/a?key=***&alt=sse',
    );
    assert.equal(withoutUrlSecrets('no url here: key=value'), 'no url here: key=value');
  });
});
