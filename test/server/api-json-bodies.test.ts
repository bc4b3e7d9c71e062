import assert from 'node:assert/strict';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

describe('API JSON bodies as HTTP helpers send them', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  const send = (method: string, route: string, body?: string): Promise<Response> =>
    fetch(tb.url + route, {
      method,
      headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body } : {}),
    });

  it('a DELETE with content-type: application/json and no body is served', async () => {
    const { keyId } = await tb.addUser('json-helper@example.com');
    const res = await send('DELETE', `/api/v1/keys/${keyId}`);
    assert.ok(res.status < 300, `${res.status} ${await res.text()}`);
  });

  it('an empty body on a POST is still invalid_json, and prototype poisoning is still refused', async () => {
    const empty = await send('POST', '/api/v1/users', '');
    assert.equal(empty.status, 400);
    assert.match(await empty.text(), /invalid_json/);
    const poisoned = await send(
      'POST',
      '/api/v1/users',
      '{"email":"p@example.com","__proto__":{"role":"admin"}}',
    );
    assert.equal(poisoned.status, 400, await poisoned.text());
  });
});
