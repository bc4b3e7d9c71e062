import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';

/** A port nothing listens on: the servers below are never reached, only their secrets matter. */
const NOWHERE = 'http://127.0.0.1:9/mcp';

/** A bridge on `dir` with a credentials key of its own: each start is a change of the key. */
function withNewCredentialsKey(upstreamUrl: string, dir: string) {
  return startBridge(upstreamUrl, { AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64') }, dir);
}

describe('MCP secrets after the credentials key changed', function () {
  this.timeout(60_000);

  it('a shared secret keeps its server down with the reason, a user credential reads as unreadable, both logged', async () => {
    const upstream = await new AnthropicMock().start();
    const dir = await tempDir();
    const token = `user-token-${randomBytes(8).toString('hex')}`;
    const secret = `shared-secret-${randomBytes(8).toString('hex')}`;
    let aliceKey: string;
    const first = await withNewCredentialsKey(upstream.url, dir);
    try {
      aliceKey = (await first.addUser('alice-rekey@example.com')).key;
      const shared = await first.api('PUT', '/api/v1/mcp/servers/shared', first.adminKey, {
        transport: { type: 'http', url: NOWHERE },
        auth: { type: 'secret', value: secret },
      });
      assert.equal(shared.status, 200, JSON.stringify(shared.body));
      const own = await first.api('PUT', '/api/v1/mcp/servers/own', first.adminKey, {
        transport: { type: 'http', url: NOWHERE },
        auth: { type: 'per_user' },
      });
      assert.equal(own.status, 200, JSON.stringify(own.body));
      const put = await first.api('PUT', '/api/v1/me/mcp/own/credentials', aliceKey, { token });
      assert.equal(put.status, 204);
    } finally {
      await first.close();
    }

    const second = await withNewCredentialsKey(upstream.url, dir);
    try {
      const shared = await second.api<{ status: { state: string; error: string | null } }>(
        'GET',
        '/api/v1/mcp/servers/shared',
        second.adminKey,
      );
      assert.equal(shared.body.status.state, 'down');
      assert.match(shared.body.status.error ?? '', /cannot be opened with the credentials key/);

      const me = await second.api<{
        items: { name: string; credential: { authorized: boolean; unreadable: boolean } | null }[];
      }>('GET', '/api/v1/me/mcp', aliceKey);
      const cred = me.body.items.find((s) => s.name === 'own')?.credential;
      assert.deepEqual(cred && { authorized: cred.authorized, unreadable: cred.unreadable }, {
        authorized: false,
        unreadable: true,
      });

      const logs = second.logs.join('');
      assert.match(logs, /the shared secret cannot be opened/);
      assert.match(logs, /a stored credential cannot be opened/);
      assert.ok(!logs.includes(token) && !logs.includes(secret), 'no secret in the logs');
    } finally {
      await second.close();
      await upstream.stop();
    }
  });

  it('a provider key sealed under the old key is removable, and its name can be added again', async () => {
    const upstream = await new AnthropicMock().start();
    const dir = await tempDir();
    const first = await withNewCredentialsKey(upstream.url, dir);
    try {
      const added = await first.api('POST', '/api/v1/providers/anthropic/keys', first.adminKey, {
        name: 'pool1',
        key: 'sk-ant-pool-one-0123456789',
      });
      assert.equal(added.status, 201, JSON.stringify(added.body));
    } finally {
      await first.close();
    }
    const second = await withNewCredentialsKey(upstream.url, dir);
    try {
      assert.match(second.logs.join(''), /provider key: cannot open the stored key/);
      // Listed, so an admin sees what to remove: in no pool, never a secret.
      const listed = await second.api('GET', '/api/v1/providers/anthropic/keys', second.adminKey);
      assert.equal(listed.status, 200);
      const items = (listed.body as { items: { name: string; state: string; source: string }[] }).items;
      assert.deepEqual(
        items.filter((k) => k.name === 'pool1').map((k) => ({ state: k.state, source: k.source })),
        [{ state: 'unreadable', source: 'api' }],
      );
      assert.ok(!JSON.stringify(listed.body).includes('sk-ant-pool-one'), 'no secret listed');
      const refused = await second.api('POST', '/api/v1/providers/anthropic/keys', second.adminKey, {
        name: 'pool1',
        key: 'sk-ant-pool-one-again-0123456789',
      });
      assert.equal(refused.status, 409, 'the name is still taken');
      assert.equal(
        (await second.api('DELETE', '/api/v1/providers/anthropic/keys/pool1', second.adminKey)).status,
        204,
      );
      const again = await second.api('POST', '/api/v1/providers/anthropic/keys', second.adminKey, {
        name: 'pool1',
        key: 'sk-ant-pool-one-again-0123456789',
      });
      assert.equal(again.status, 201, JSON.stringify(again.body));
      const relisted = await second.api('GET', '/api/v1/providers/anthropic/keys', second.adminKey);
      assert.deepEqual(
        (relisted.body as { items: { name: string; state: string }[] }).items
          .filter((k) => k.name === 'pool1')
          .map((k) => k.state),
        ['active'],
      );
      assert.equal(
        (await second.api('DELETE', '/api/v1/providers/anthropic/keys/nothing', second.adminKey)).status,
        404,
      );
    } finally {
      await second.close();
      await upstream.stop();
    }
  });
});
