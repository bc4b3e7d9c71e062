import assert from 'node:assert/strict';
import { MEMBER_WRITES_PER_MINUTE } from '../../server/identity/member-writes';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { keySignIn } from '../helpers/session';

/**
 * Each change a member makes through `/api` is a document or key written, which the embedded
 * store serialises whole into db.json on the event loop: a member's loop (sign-ins, key revokes,
 * MCP tokens) would hold up every request. Past the pace a change is refused before anything is written.
 */
describe('changes a member makes through /api are paced (MEMBER_WRITES_PER_MINUTE)', () => {
  const clock = new TestClock();
  let mock: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url, {}, undefined, { clock });
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  const call = (method: string, route: string, key: string, body?: unknown) =>
    fetch(tb.url + route, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        'x-aibridge-csrf': '1',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const signIn = (key: string) => keySignIn(tb.url, key);

  it('refuses a member’s change past the pace with 429 rate_limited and retry-after, writing nothing; reads, model calls, others and admins go on; a minute later it is served', async () => {
    assert.equal(MEMBER_WRITES_PER_MINUTE, 60);
    const looper = await tb.addUser('looper@example.com');
    const other = await tb.addUser('bystander@example.com');
    const admin = await tb.addUser('script@example.com', { role: 'admin' });
    const sessions = async () => (await tb.bridge.store.listDocs('admin_session')).length;

    // Sign-ins (each a session stored) and token puts (each a document; one for a server that is
    // not there is refused by the route, but was a change asked for): both count.
    for (let i = 0; i < MEMBER_WRITES_PER_MINUTE; i++) {
      const res =
        i % 2 === 0
          ? await signIn(looper.key)
          : await call('PUT', '/api/v1/me/mcp/nowhere/credentials', looper.key, { token: 't' });
      assert.equal(res.status, i % 2 === 0 ? 201 : 404, `change ${i}`);
      await res.arrayBuffer();
    }
    const stored = await sessions();
    for (const refused of [
      await signIn(looper.key),
      await call('PUT', '/api/v1/me/mcp/nowhere/credentials', looper.key, { token: 't' }),
    ]) {
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'rate_limited');
    }
    assert.equal(await sessions(), stored, 'no session stored for the refused sign-in');

    // Ending things is never paced: a member whose key leaked, and whose pace the thief keeps
    // full, can still revoke it (a DELETE writes only what exists, so it cannot be looped).
    const second = await tb.bridge.identity.issueKey(looper.user, { name: 'leaked' });
    const revoked = await call('DELETE', `/api/v1/keys/${second.id}`, looper.key);
    assert.equal(revoked.status, 200, await revoked.text());
    assert.ok((await tb.bridge.store.getKey(second.id))?.revokedAt, 'the leaked key is revoked');

    // Reads and model requests are not changes.
    assert.equal((await call('GET', '/api/v1/me', looper.key)).status, 200);
    const model = await askMessages(tb.url, looper.key, { model: 'claude-sonnet-4-5', max_tokens: 16 });
    assert.equal(model.status, 200);
    // Another member is not paced by this one; an admin's script is not paced at all.
    assert.equal((await signIn(other.key)).status, 201);
    for (let i = 0; i < MEMBER_WRITES_PER_MINUTE + 5; i++)
      assert.equal((await signIn(admin.key)).status, 201);

    clock.advance(61_000);
    assert.equal((await signIn(looper.key)).status, 201, 'served again a minute later');
  });
});
