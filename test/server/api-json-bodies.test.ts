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

  it('a team or subject written with a space at an end names the team without it (budgets, filters)', async () => {
    await tb.addUser('trimmed-team@example.com', { team: 'platform' });
    const put = await send(
      'PUT',
      '/api/v1/budgets',
      JSON.stringify({ scope: 'team', subject: ' platform ', period: 'month', limitUsd: 5, action: 'alert' }),
    );
    assert.equal(put.status, 200, await put.clone().text());
    assert.equal(((await put.json()) as { subject: string }).subject, 'platform');
    const users = await fetch(`${tb.url}/api/v1/usage/users?team=platform%20`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    assert.equal(users.status, 200);
    const body = (await users.json()) as { rows?: { email: string }[]; items?: { email: string }[] };
    const rows = body.rows ?? body.items ?? [];
    assert.ok(
      rows.some((r) => r.email === 'trimmed-team@example.com'),
      JSON.stringify(body).slice(0, 300),
    );
  });
});
