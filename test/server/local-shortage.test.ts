import assert from 'node:assert/strict';
import net from 'node:net';
import { Client } from 'undici';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { devKey, exited, type Served, serve } from '../helpers/served-bridge';

/**
 * A replica out of file descriptors is the bridge's shortage, not the provider's failure: before,
 * its `EMFILE` was a 502 "provider could not be reached", and it opened the provider's breaker for
 * every member while the provider was healthy.
 */
describe('a bridge out of file descriptors', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let bridge: Served | undefined;
  const hogs: net.Socket[] = [];
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(async () => {
    for (const s of hogs) s.destroy();
    bridge?.child.kill('SIGKILL');
    if (bridge) await exited(bridge.child);
    await mock.stop();
  });

  // By address, and by name: a lookup out of descriptors fails as "not found".
  for (const host of ['127.0.0.1', 'localhost'])
    it(`answers 503 server_busy, logs it, and leaves the provider’s breaker closed (upstream by ${host})`, async () => {
      for (const s of hogs.splice(0)) s.destroy();
      if (bridge) {
        bridge.child.kill('SIGKILL');
        await exited(bridge.child);
      }
      const upstream = mock.url.replace('127.0.0.1', host);
      bridge = await serve(
        await tempDir('aibridge-emfile-'),
        upstream,
        { AIBRIDGE_BREAKER_THRESHOLD: '1' },
        { fds: 80 },
      );
      const key = await devKey(bridge);
      const origin = bridge.url;
      // One connection opened before the descriptors run out; the request on it needs a new one
      // upstream (none is pooled yet).
      const client = new Client(origin);
      assert.equal((await client.request({ path: '/healthz', method: 'GET' })).statusCode, 200);
      // Every descriptor left taken by idle client connections the bridge accepts and holds.
      for (let i = 0; i < 200; i++) {
        const s = net.connect(Number(new URL(origin).port), '127.0.0.1');
        s.on('error', () => undefined);
        hogs.push(s);
      }
      await new Promise((r) => setTimeout(r, 500));
      const body = JSON.stringify({
        model: 'claude-sonnet-4-6',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const res = await client.request({
        path: '/anthropic/v1/messages',
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body,
      });
      const text = await res.body.text();
      assert.equal(res.statusCode, 503, text);
      assert.equal(res.headers['x-aibridge-error-code'], 'server_busy');
      assert.match(text, /ran out of file descriptors \(EMFILE\)/);
      // The log line and the answer reach this process on two pipes: either may come first.
      const served = bridge;
      await eventually(() => /ran out of file descriptors/.test(served.out()), {
        what: 'the shortage logged for the operator',
      });
      await client.close();
      // Descriptors back: the model is served at once, with the breaker (threshold 1) never opened.
      for (const s of hogs.splice(0)) s.destroy();
      const again = await eventually(
        async () => {
          const c = new Client(origin);
          try {
            const r = await c.request({
              path: '/anthropic/v1/messages',
              method: 'POST',
              headers: {
                'x-api-key': key,
                'content-type': 'application/json',
                'anthropic-version': '2023-06-01',
              },
              body,
            });
            await r.body.text();
            return r.statusCode;
          } catch {
            return undefined;
          } finally {
            await c.close().catch(() => undefined);
          }
        },
        { timeoutMs: 10_000, what: 'the bridge to take connections again' },
      );
      assert.equal(again, 200, 'no open breaker refused it');
    });
});
