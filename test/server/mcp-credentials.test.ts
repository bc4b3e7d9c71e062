import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Log } from '../../server/core/log';
import { CredentialCipher } from '../../server/mcp/cipher';
import { McpCredentials } from '../../server/mcp/credentials';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/bridge';

function recordingLog(): Log & { errors: { obj: object; msg: string }[] } {
  const errors: { obj: object; msg: string }[] = [];
  return { errors, error: (obj, msg) => errors.push({ obj, msg }), warn: () => undefined };
}

describe('MCP credentials sealed with another key', () => {
  it('are an error logged once and an unreadable state, not "no credential"', async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    try {
      const keyA = randomBytes(32).toString('base64');
      const keyB = randomBytes(32).toString('base64');
      const token = 'ghp_secret-token-value';
      await new McpCredentials(store, new CredentialCipher(keyA), recordingLog()).put('files', 'u1', {
        kind: 'token',
        token,
      });

      const log = recordingLog();
      const creds = new McpCredentials(store, new CredentialCipher(keyB), log);
      await creds.load();
      assert.deepEqual(creds.lookup('files', 'u1'), { state: 'unreadable' });
      assert.deepEqual(creds.lookup('files', 'nobody'), { state: 'none' });
      assert.equal(creds.get('files', 'u1'), undefined);
      const info = creds.info('files', 'u1');
      assert.equal(info?.unreadable, true);
      assert.equal(info?.authorized, false);

      assert.equal(log.errors.length, 1, 'logged once, however often it is looked up');
      assert.match(log.errors[0]!.msg, /cannot be opened/);
      assert.deepEqual(
        {
          server: (log.errors[0]!.obj as { server: string }).server,
          userId: (log.errors[0]!.obj as { userId: string }).userId,
        },
        { server: 'files', userId: 'u1' },
      );
      assert.ok(!JSON.stringify(log.errors).includes(token), 'the secret is not logged');

      // Set again with the current key, it opens.
      await creds.put('files', 'u1', { kind: 'token', token });
      assert.equal(creds.lookup('files', 'u1').state, 'ok');
      assert.equal(creds.info('files', 'u1')?.unreadable, false);
    } finally {
      await store.close();
    }
  });
});
