import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';

/** A model of the backup instance, priced only there (the price data does not know it). */
const BACKUP_MODEL = 'claude-backup-1';
const OPUS = 'claude-opus-4-5';

/**
 * A route is the admin's, a model policy may be a team's: a member must not reach a model their
 * team is denied by asking for an org-wide route to it, and a route's name is not its price.
 */
describe('routes under model policy and prices (docs/routing.md)', () => {
  let primary: AnthropicMock;
  let backup: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    primary = await new AnthropicMock().start();
    backup = await new AnthropicMock().start();
    const dir = await tempDir();
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          anthropic: { type: 'anthropic', baseUrl: primary.url, apiKey: UPSTREAM_KEY },
          backup: {
            type: 'anthropic',
            baseUrl: backup.url,
            apiKey: UPSTREAM_KEY,
            prices: { [BACKUP_MODEL]: { inputPerMTok: 1, outputPerMTok: 2 } },
          },
        },
        routes: {
          best: [`anthropic:${OPUS}`, `backup:${BACKUP_MODEL}`],
          'opus-only': [`anthropic:${OPUS}`],
          'backup-only': [`backup:${BACKUP_MODEL}`],
        },
      }),
    );
    tb = await startBridge(primary.url, { AIBRIDGE_PROVIDERS_FILE: file, AIBRIDGE_UNPRICED_MODELS: 'block' });
    const put = await tb.api('PUT', '/api/v1/teams/interns/models', tb.adminKey, { deny: ['claude-opus-*'] });
    assert.equal(put.status, 200);
  });

  after(async () => {
    await tb?.close();
    await Promise.all([primary?.stop(), backup?.stop()]);
  });

  const client = (key: string): Anthropic =>
    new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
  const modelSent = (mock: AnthropicMock): string | undefined => {
    const last = mock.messageRequests().at(-1);
    return last && (JSON.parse(last.body) as { model?: string }).model;
  };
  const ask = (key: string, model: string) =>
    client(key).messages.create({ model, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });

  it('serves a team only through the targets its policy admits; the others still reach every target', async () => {
    const intern = await tb.addUser('intern@example.com', { team: 'interns' });
    const dev = await tb.addUser('routed-dev@example.com');
    const before = primary.messageRequests().length;
    await ask(intern.key, 'best');
    assert.equal(primary.messageRequests().length, before, 'the denied target was not asked');
    assert.equal(modelSent(backup), BACKUP_MODEL);
    const [rec] = await tb.interceptions(1);
    assert.equal(rec?.model, BACKUP_MODEL);
    assert.equal(rec?.provider, 'backup');

    await ask(dev.key, 'best');
    assert.equal(
      primary.messageRequests().length,
      before + 1,
      'a user without the policy gets the first target',
    );
    assert.equal(modelSent(primary), OPUS);
  });

  it('refuses a route whose every target the policy denies (403 model_denied), before any provider', async () => {
    const intern = await tb.addUser('intern2@example.com', { team: 'interns' });
    const before = primary.messageRequests().length + backup.messageRequests().length;
    await assert.rejects(ask(intern.key, 'opus-only'), (err: unknown) => {
      assert.ok(err instanceof APIError);
      assert.equal(err.status, 403);
      assert.equal(err.headers?.get('x-aibridge-error-code'), 'model_denied');
      assert.match(err.message, /claude-opus-4-5\W+ is denied for team \W+interns/);
      return true;
    });
    assert.equal(primary.messageRequests().length + backup.messageRequests().length, before);
    const [rec] = await tb.interceptions(1);
    assert.equal(rec?.error?.type, 'model_denied');
  });

  it('judges a route by its targets’ prices, not its name: a priced target serves under unpriced=block', async () => {
    const dev = await tb.addUser('priced-route@example.com');
    // `backup-only` is no model anywhere: it was refused as unpriced, though what serves is priced.
    const answer = await ask(dev.key, 'backup-only');
    assert.equal(answer.type, 'message');
    const [rec] = await tb.interceptions(1);
    assert.equal(rec?.model, BACKUP_MODEL);
    assert.ok((rec?.costUsd ?? 0) > 0, 'priced as the backup model');
  });
});
