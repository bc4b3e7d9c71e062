import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';

/**
 * A change the embedded store could not write (a full disk, a data dir gone) must not be in force:
 * in force until a restart and then lost, a key revoked on a full disk worked again afterwards.
 * db.json's temporary file made a directory stands in for the disk refusing the write.
 */
describe('embedded store: an admin change the disk refuses', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(async () => {
    await mock.stop();
  });

  it('answers 503 store_unavailable, changes nothing, and a retry once the disk takes writes is kept across a restart', async () => {
    const dir = await tempDir('aibridge-refused-write-');
    const tb = await startBridge(mock.url, {}, dir);
    const blocker = path.join(dir, 'db.json.tmp');
    let member: { key: string; keyId: string };
    try {
      member = await tb.addUser('member@example.com');
      await fs.mkdir(blocker);

      const revoke = await tb.api<{ error: { code: string; message: string } }>(
        'DELETE',
        `/api/v1/keys/${member.keyId}`,
        tb.adminKey,
      );
      assert.equal(revoke.status, 503);
      assert.equal(revoke.headers.get('x-aibridge-error-code'), 'store_unavailable');
      assert.match(revoke.body.error.message, /nothing was changed/);
      // Not revoked in memory either: what the admin was told is what is in force.
      assert.equal((await tb.api('GET', '/api/v1/me', member.key)).status, 200);

      const create = await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'lost@example.com' });
      assert.equal(create.status, 503);
      const users = (await tb.api<{ items: { email: string }[] }>('GET', '/api/v1/users', tb.adminKey)).body;
      assert.ok(!JSON.stringify(users).includes('lost@example.com'));

      await fs.rmdir(blocker);
      assert.equal((await tb.api('DELETE', `/api/v1/keys/${member.keyId}`, tb.adminKey)).status, 200);
      assert.equal((await tb.api('GET', '/api/v1/me', member.key)).status, 401);
      assert.equal(
        (await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'lost@example.com' })).status,
        201,
      );
    } finally {
      await tb.close();
    }
    const again = await startBridge(mock.url, {}, dir);
    try {
      assert.equal((await again.api('GET', '/api/v1/me', member.key)).status, 401);
      const users = (await again.api('GET', '/api/v1/users', again.adminKey)).body;
      assert.ok(JSON.stringify(users).includes('lost@example.com'));
    } finally {
      await again.close();
    }
  });
});
