import assert from 'node:assert/strict';
import net from 'node:net';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

/**
 * A client that sends `Expect: 100-continue` and waits, as curl does for large bodies: what the
 * bridge answers before the body is sent, and whether the body is then wanted.
 */
function expecting(
  base: string,
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ first: string; all: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let got = '';
    let first: string | undefined;
    let sent = false;
    const head = Object.entries({
      host: `${hostname}:${port}`,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      expect: '100-continue',
      connection: 'close',
      ...headers,
    })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n`);
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      first ??= got.split('\r\n')[0];
      // Only once told to go on does the body go.
      if (!sent && got.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        sent = true;
        socket.write(body);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ first: first ?? '', all: got }));
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`no answer; got ${JSON.stringify(got)}`));
    });
  });
}

const MESSAGE = JSON.stringify({
  model: 'claude-sonnet-4-5',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'hello' }],
});

describe('Expect: 100-continue', () => {
  let up: AnthropicMock;
  let tb: TestBridge;
  let dev: { key: string };

  before(async () => {
    up = await new AnthropicMock().start();
    tb = await startBridge(up.url);
    dev = await tb.addUser('continue@example.com');
  });
  after(async () => {
    await tb.close();
    await up.stop();
  });

  it('a model request with a bad key is refused before its body is asked for; a good key is asked for it and served', async () => {
    const seen = up.requests.length;
    const refused = await expecting(
      tb.url,
      '/anthropic/v1/messages',
      { 'x-api-key': 'aib_not-a-key', 'anthropic-version': '2023-06-01' },
      MESSAGE,
    );
    assert.equal(refused.first, 'HTTP/1.1 401 Unauthorized');
    assert.doesNotMatch(refused.all, /100 Continue/);
    assert.match(refused.all, /"type":"authentication_error"/);

    const served = await expecting(
      tb.url,
      '/anthropic/v1/messages',
      { 'x-api-key': dev.key, 'anthropic-version': '2023-06-01' },
      MESSAGE,
    );
    assert.equal(served.first, 'HTTP/1.1 100 Continue');
    assert.match(served.all, /\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    assert.match(served.all, /"type":"message"/);
    assert.equal(up.requests.length, seen + 1, 'only the served request reached the provider');
  });

  it('a body declared over the body limit is refused (413) before it is asked for, on the fast lane and the API', async () => {
    const huge = { 'content-length': String(2 ** 40) };
    const lane = await expecting(
      tb.url,
      '/anthropic/v1/messages',
      { 'x-api-key': dev.key, 'anthropic-version': '2023-06-01', ...huge },
      MESSAGE,
    );
    assert.equal(lane.first, 'HTTP/1.1 413 Payload Too Large');
    assert.doesNotMatch(lane.all, /100 Continue/);
    const api = await expecting(
      tb.url,
      '/api/v1/users',
      { authorization: `Bearer ${tb.adminKey}`, ...huge },
      JSON.stringify({ email: 'huge@example.com' }),
    );
    assert.equal(api.first, 'HTTP/1.1 413 Payload Too Large');
    assert.doesNotMatch(api.all, /100 Continue/);
  });

  it('the same on the bridge’s own API and on a provider route outside the fast lane', async () => {
    const user = JSON.stringify({ email: 'continued@example.com' });
    const refused = await expecting(tb.url, '/api/v1/users', { authorization: 'Bearer aib_nope' }, user);
    assert.equal(refused.first, 'HTTP/1.1 401 Unauthorized');
    assert.doesNotMatch(refused.all, /100 Continue/);
    const created = await expecting(
      tb.url,
      '/api/v1/users',
      { authorization: `Bearer ${tb.adminKey}` },
      user,
    );
    assert.equal(created.first, 'HTTP/1.1 100 Continue');
    assert.match(created.all, /\r\n\r\nHTTP\/1\.1 201 Created\r\n/);

    const count = JSON.stringify({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] });
    const countRefused = await expecting(
      tb.url,
      '/anthropic/v1/messages/count_tokens',
      { 'x-api-key': 'aib_not-a-key', 'anthropic-version': '2023-06-01' },
      count,
    );
    assert.equal(countRefused.first, 'HTTP/1.1 401 Unauthorized');
    assert.doesNotMatch(countRefused.all, /100 Continue/);
    const counted = await expecting(
      tb.url,
      '/anthropic/v1/messages/count_tokens',
      { 'x-api-key': dev.key, 'anthropic-version': '2023-06-01' },
      count,
    );
    assert.equal(counted.first, 'HTTP/1.1 100 Continue');
    assert.match(counted.all, /\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  });
});
