import assert from 'node:assert/strict';
import http from 'node:http';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';

const post = (tb: TestBridge, key: string, model = 'claude-sonnet-4-5') =>
  fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({
      model,
      max_tokens: 16,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  });

/** The status of the first request not refused for the user's requests in flight (their places freed). */
async function servedOnceFree(tb: TestBridge, key: string): Promise<number> {
  const res = await eventually(
    async () => {
      const r = await post(tb, key);
      if (r.status !== 429) return r;
      await r.text();
      return undefined;
    },
    { what: 'a freed place' },
  );
  await res.text();
  return res.status;
}

describe('requests to providers one user may have running at once (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER)', function () {
  this.timeout(30_000);
  let mock: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url, { AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER: '2', AIBRIDGE_BURST_RPM: '0' });
  });
  after(async () => {
    mock.countTokensGate = undefined;
    await tb.close();
    await mock.stop();
  });

  it('refuses a third while two run, in the provider’s shape, before the provider is asked; others are served; a finished one frees its place', async () => {
    const heavy = await tb.addUser('in-flight-heavy@example.com');
    const other = await tb.addUser('in-flight-other@example.com');
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    mock.next({ kind: 'gated', gate }, { kind: 'gated', gate });
    const [a, b] = await Promise.all([post(tb, heavy.key), post(tb, heavy.key)]);
    assert.equal(a!.status, 200);
    assert.equal(b!.status, 200);

    const before = mock.messageRequests().length;
    const third = await post(tb, heavy.key);
    assert.equal(third.status, 429);
    assert.equal(third.headers.get('retry-after'), '1');
    const body = (await third.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER/);
    assert.equal(mock.messageRequests().length, before, 'not sent upstream');

    const served = await post(tb, other.key);
    assert.equal(served.status, 200, 'another user is not held by this one');
    await served.text();

    release();
    await a!.text();
    await b!.text();
    assert.equal(await servedOnceFree(tb, heavy.key), 200);
  });

  it('gives the place back however the request ends: refused by a later check, or its client gone', async () => {
    const dev = await tb.addUser('in-flight-ends@example.com', { team: 'in-flight-denied' });
    const put = await tb.api('PUT', '/api/v1/teams/in-flight-denied/models', tb.adminKey, {
      allow: ['claude-*'],
      deny: ['claude-opus-*'],
    });
    assert.equal(put.status, 200);
    // Refused by the model policy, after the place was taken: five of them, more than the cap.
    for (let i = 0; i < 5; i++) {
      const denied = await post(tb, dev.key, 'claude-opus-4-1');
      assert.equal(denied.status, 403);
      await denied.text();
    }
    // Clients that leave while their streams are held at the upstream.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    for (let i = 0; i < 3; i++) {
      mock.next({ kind: 'gated', gate });
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${tb.url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': dev.key,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
        });
        req.on('response', (res) => {
          resolve(res.statusCode ?? 0);
          // The client leaves once the stream has begun.
          req.destroy();
        });
        req.on('error', () => undefined);
        req.on('close', () => resolve(0));
        req.end(
          JSON.stringify({
            model: 'claude-sonnet-4-5',
            max_tokens: 16,
            stream: true,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        );
        setTimeout(() => reject(new Error('no answer')), 5000).unref();
      });
      assert.equal(status, 200);
    }
    assert.equal(await servedOnceFree(tb, dev.key), 200);
    open();
  });

  const countTokens = (key: string) =>
    fetch(`${tb.url}/anthropic/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] }),
    });
  const countsSeen = () => mock.requests.filter((r) => r.url.startsWith('/v1/messages/count_tokens')).length;

  it('counts token counts held at the provider: a third is refused before it is forwarded, and a metered request too; each frees its place when answered', async () => {
    const dev = await tb.addUser('in-flight-counts@example.com');
    let release!: () => void;
    mock.countTokensGate = new Promise<void>((r) => {
      release = r;
    });
    const held = [countTokens(dev.key), countTokens(dev.key)];
    await eventually(async () => (countsSeen() === 2 ? true : undefined), { what: 'two counts upstream' });

    const third = await countTokens(dev.key);
    assert.equal(third.status, 429);
    assert.equal(third.headers.get('retry-after'), '1');
    const body = (await third.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER/);
    assert.equal(countsSeen(), 2, 'the third was not forwarded');
    const metered = await post(tb, dev.key);
    assert.equal(metered.status, 429, 'the two held counts fill the places metered requests take too');
    await metered.text();

    release();
    for (const r of await Promise.all(held)) {
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { input_tokens: 42 });
    }
    mock.countTokensGate = undefined;
    assert.equal(await servedOnceFree(tb, dev.key), 200);
    const again = await countTokens(dev.key);
    assert.equal(again.status, 200);
    await again.text();
  });

  it('frees the place of a passthrough whose client left while the provider held it', async () => {
    const dev = await tb.addUser('in-flight-counts-gone@example.com');
    let release!: () => void;
    mock.countTokensGate = new Promise<void>((r) => {
      release = r;
    });
    const seen = countsSeen();
    for (let i = 0; i < 2; i++) {
      const req = http.request(`${tb.url}/anthropic/v1/messages/count_tokens`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
      });
      req.on('error', () => undefined);
      req.end(JSON.stringify({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] }));
      await eventually(async () => (countsSeen() === seen + i + 1 ? true : undefined), {
        what: 'the count upstream',
      });
      req.destroy();
    }
    // Both clients are gone while the provider still holds their counts: their places are free.
    assert.equal(await servedOnceFree(tb, dev.key), 200);
    release();
    mock.countTokensGate = undefined;
  });
});
