import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';

/**
 * An alias and a route may not share a name (the alias would take every request for it); each API
 * refuses the second. One stored through the API and one from the providers file meet only at a
 * start: the bridge starts (refusing would stop a running deployment) and says so, naming both.
 */
describe('an alias and a route of one name, one stored and one from the file, after a restart', function () {
  this.timeout(30000);
  let up: AnthropicMock;
  before(async () => {
    up = await new AnthropicMock().start();
  });
  after(async () => up?.stop());

  const ROUTE = { best: ['anthropic:claude-opus-4-1', 'anthropic:claude-sonnet-4-5'] };

  /** Starts a bridge on `data` with `providers` as its file, after `first` ran on it with none. */
  async function restarted(
    first: (tb: Awaited<ReturnType<typeof startBridge>>) => Promise<void>,
    providers: Record<string, unknown>,
  ): Promise<string[]> {
    const data = await tempDir();
    const file = path.join(await tempDir(), 'providers.json');
    await fs.writeFile(file, JSON.stringify({ providers: {} }));
    const before = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    await first(before);
    await before.close();
    await fs.writeFile(file, JSON.stringify({ providers: {}, ...providers }));
    const after = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, data);
    await after.close();
    return after.logs;
  }

  const said = (logs: string[]) =>
    logs.some((l) => /alias \\"best\\" has a route's name: requests for it go to claude-haiku-4-5/.test(l));

  it('a stored alias, then a route of its name in the providers file', async () => {
    const logs = await restarted(
      async (tb) => {
        const put = await tb.api('PUT', '/api/v1/aliases/best', tb.adminKey, { model: 'claude-haiku-4-5' });
        assert.equal(put.status, 200);
      },
      { routes: ROUTE },
    );
    assert.ok(said(logs), logs.join('\n'));
  });

  it('stored routes, then an alias of a route’s name in the providers file', async () => {
    const logs = await restarted(
      async (tb) => {
        const put = await tb.api('PUT', '/api/v1/routes', tb.adminKey, { routes: ROUTE });
        assert.equal(put.status, 200, JSON.stringify(put.body));
      },
      { aliases: { best: 'claude-haiku-4-5' } },
    );
    assert.ok(said(logs), logs.join('\n'));
  });
});
