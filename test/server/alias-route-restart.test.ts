import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';

describe('an alias and a route of one name, one stored and one from the file, after a restart', function () {
  this.timeout(30000);
  let up: AnthropicMock;
  before(async () => {
    up = await new AnthropicMock().start();
  });
  after(async () => up?.stop());

  it('a stored alias, then a route of its name added to the providers file: said at start, naming both', async () => {
    const data = await tempDir();
    const file = path.join(await tempDir(), 'providers.json');
    await fs.writeFile(file, JSON.stringify({ providers: {} }));
    const first = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    assert.equal(
      (await first.api('PUT', '/api/v1/aliases/best', first.adminKey, { model: 'claude-haiku-4-5' })).status,
      200,
    );
    await first.close();
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {},
        routes: { best: ['anthropic:claude-opus-4-1', 'anthropic:claude-sonnet-4-5'] },
      }),
    );
    let started: Awaited<ReturnType<typeof startBridge>> | undefined;
    try {
      started = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    } catch (err) {
      assert.match((err as Error).message, /best/);
      return;
    }
    try {
      const dev = await started.addUser(`u${Math.random()}@example.com`);
      await fetch(`${started.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-api-key': dev.key,
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({ model: 'best', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const warned = started.logs.some((l) => /best/.test(l) && /alias/.test(l) && /route/.test(l));
      assert.ok(
        warned,
        'the bridge started with route "best" shadowed by the stored alias "best", without a word',
      );
    } finally {
      await started.close();
    }
  });

  it('stored routes, then an alias of a route’s name added to the providers file: said at start, naming both', async () => {
    const data = await tempDir();
    const file = path.join(await tempDir(), 'providers.json');
    await fs.writeFile(file, JSON.stringify({ providers: {} }));
    const first = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    const put = await first.api('PUT', '/api/v1/routes', first.adminKey, {
      routes: { best: ['anthropic:claude-opus-4-1', 'anthropic:claude-sonnet-4-5'] },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await first.close();
    await fs.writeFile(file, JSON.stringify({ providers: {}, aliases: { best: 'claude-haiku-4-5' } }));
    let started: Awaited<ReturnType<typeof startBridge>> | undefined;
    try {
      started = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    } catch (err) {
      assert.match((err as Error).message, /best/);
      return;
    }
    try {
      const dev = await started.addUser(`u${Math.random()}@example.com`);
      await fetch(`${started.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-api-key': dev.key,
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({ model: 'best', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const warned = started.logs.some((l) => /best/.test(l) && /alias/.test(l) && /route/.test(l));
      assert.ok(
        warned,
        'the bridge started with stored route "best" shadowed by the file alias "best", without a word',
      );
    } finally {
      await started.close();
    }
  });
});
