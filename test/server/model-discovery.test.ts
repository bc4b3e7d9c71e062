import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic, { NotFoundError } from '@anthropic-ai/sdk';
import OpenAI, { NotFoundError as OpenAINotFound } from 'openai';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';

describe('model discovery: /v1/models answered by the bridge', () => {
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string };
  let ml: { key: string };

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    const file = path.join(await tempDir('aibridge-discovery-'), 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({ providers: {}, aliases: { fast: 'claude-haiku-4-5', quick: 'gpt-5-mini' } }),
    );
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_PROVIDERS_FILE: file,
    });
    dev = await tb.addUser('discovery-dev@example.com', { team: 'platform' });
    ml = await tb.addUser('discovery-ml@example.com', { team: 'ml' });
    const put = await tb.api('PUT', '/api/v1/teams/ml/models', tb.adminKey, {
      deny: ['claude-haiku-*', 'gpt-5-mini'],
    });
    assert.equal(put.status, 200);
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  function claudeFor(key: string): Anthropic {
    return new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
  }
  function gptFor(key: string): OpenAI {
    return new OpenAI({ apiKey: key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  }
  async function allAnthropic(key: string, limit?: number): Promise<Anthropic.ModelInfo[]> {
    const out: Anthropic.ModelInfo[] = [];
    for await (const m of claudeFor(key).models.list(limit ? { limit } : {})) out.push(m);
    return out;
  }

  it('Anthropic: models.list() pages through the caller’s models, aliases first, without asking the upstream', async () => {
    const before = anthropic.requests.length;
    const models = await allAnthropic(dev.key);
    assert.equal(anthropic.requests.length, before, 'the upstream is not asked');
    const ids = models.map((m) => m.id);
    assert.equal(ids[0], 'fast', 'the alias comes first');
    assert.ok(!ids.includes('quick'), 'an alias of a model this instance does not serve is not listed here');
    for (const id of ['claude-haiku-4-5', 'claude-sonnet-4-6', 'claude-opus-4-6'])
      assert.ok(ids.includes(id), id);
    assert.ok(ids.length > 20, 'more than one page of the default size 20');
    assert.equal(new Set(ids).size, ids.length, 'no model twice across pages');
    const fast = models[0]!;
    assert.equal(fast.type, 'model');
    assert.match(fast.display_name, /fast → claude-haiku-4-5/);
    assert.ok(!Number.isNaN(Date.parse(fast.created_at)));
    const sonnet = models.find((m) => m.id === 'claude-sonnet-4-6')!;
    assert.equal(sonnet.display_name, 'Claude Sonnet 4.6');

    const small = await allAnthropic(dev.key, 5);
    assert.deepEqual(
      small.map((m) => m.id),
      ids,
      'limit=5 pages to the same list',
    );
  });

  it('Anthropic: the page shape, after_id and before_id', async () => {
    const get = async (q: string) => {
      const res = await fetch(`${tb.url}/anthropic/v1/models${q}`, { headers: { 'x-api-key': dev.key } });
      return {
        status: res.status,
        body: (await res.json()) as Record<string, unknown> & { data: { id: string }[] },
      };
    };
    const first = await get('?limit=3');
    assert.equal(first.status, 200);
    assert.equal(first.body.data.length, 3);
    assert.equal(first.body.has_more, true);
    assert.equal(first.body.first_id, 'fast');
    assert.equal(first.body.last_id, first.body.data[2]!.id);
    const next = await get(`?limit=3&after_id=${first.body.last_id}`);
    const back = await get(`?limit=3&before_id=${next.body.first_id}`);
    assert.deepEqual(
      back.body.data.map((m) => m.id),
      first.body.data.map((m) => m.id),
    );
    assert.equal(back.body.has_more, false);
    const bad = await get('?limit=0');
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { type: string }).type, 'invalid_request_error');
  });

  it('Anthropic: models.retrieve() agrees with the list; a model the caller may not use is a 404 in Anthropic’s shape', async () => {
    const c = claudeFor(dev.key);
    assert.equal((await c.models.retrieve('fast')).display_name, 'fast → claude-haiku-4-5');
    assert.equal((await c.models.retrieve('claude-sonnet-4-6')).id, 'claude-sonnet-4-6');
    const denied = await claudeFor(ml.key)
      .models.retrieve('claude-haiku-4-5')
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(denied instanceof NotFoundError);
    assert.equal((denied.error as { error: { type: string } }).error.type, 'not_found_error');
    const unknown = await c.models.retrieve('no-such-model').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(unknown instanceof NotFoundError);
  });

  it('a team that denies a model sees neither it nor the alias that stands for it', async () => {
    const ids = (await allAnthropic(ml.key)).map((m) => m.id);
    assert.ok(!ids.includes('claude-haiku-4-5'));
    assert.ok(!ids.includes('fast'));
    assert.ok(ids.includes('claude-sonnet-4-6'));
    const openaiIds: string[] = [];
    for await (const m of gptFor(ml.key).models.list()) openaiIds.push(m.id);
    assert.ok(!openaiIds.includes('gpt-5-mini'));
    assert.ok(!openaiIds.includes('quick'));
    assert.ok(openaiIds.includes('gpt-5'));
  });

  it('OpenAI: models.list() and retrieve() in OpenAI’s shape, the alias included, the upstream not asked', async () => {
    const before = openai.requests.length;
    const client = gptFor(dev.key);
    const models: OpenAI.Models.Model[] = [];
    for await (const m of client.models.list()) models.push(m);
    assert.equal(openai.requests.length, before);
    const ids = models.map((m) => m.id);
    assert.equal(ids[0], 'quick');
    assert.ok(!ids.includes('fast'));
    for (const id of ['gpt-5', 'gpt-5-mini', 'o3']) assert.ok(ids.includes(id), id);
    assert.ok(!ids.some((id) => id.startsWith('ft:') || id.endsWith('-')), 'no price-data stems');
    assert.deepEqual(models[0], { id: 'quick', object: 'model', created: 0, owned_by: 'aibridge' });
    assert.equal(models.find((m) => m.id === 'gpt-5')!.owned_by, 'openai');
    assert.equal((await client.models.retrieve('quick')).id, 'quick');
    const missing = await gptFor(ml.key)
      .models.retrieve('quick')
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(missing instanceof OpenAINotFound);
    assert.equal((missing.error as { code: string }).code, 'model_not_found');
  });

  it('answers only callers with a key', async () => {
    assert.equal((await fetch(`${tb.url}/anthropic/v1/models`)).status, 401);
    assert.equal((await fetch(`${tb.url}/openai/v1/models`)).status, 401);
  });
});

describe('model discovery on Bedrock and Vertex AI instances (Anthropic’s wire)', () => {
  let tb: TestBridge;
  let dev: { key: string };
  let ml: { key: string };
  const HAIKU_PROFILE = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';

  before(async () => {
    const file = path.join(await tempDir('aibridge-discovery-clouds-'), 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          bedrock: {
            type: 'bedrock',
            region: 'us-east-1',
            baseUrl: 'http://127.0.0.1:9',
            models: {
              'claude-haiku-4-5-20251001': HAIKU_PROFILE,
              sonnet:
                'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0',
            },
          },
          vertex: {
            type: 'vertex-anthropic',
            project: 'my-project',
            region: 'us-east5',
            baseUrl: 'http://127.0.0.1:9',
            models: { 'house-opus': 'claude-opus-4-1@20250805' },
          },
        },
        aliases: { fast: 'claude-haiku-4-5', quick: 'claude-haiku-4-5-20251001' },
      }),
    );
    // No upstream is asked for a listing: none of these answers.
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
    dev = await tb.addUser('clouds-dev@example.com', { team: 'platform' });
    ml = await tb.addUser('clouds-ml@example.com', { team: 'ml' });
    const put = await tb.api('PUT', '/api/v1/teams/ml/models', tb.adminKey, { deny: ['claude-sonnet-*'] });
    assert.equal(put.status, 200);
  });
  after(async () => {
    await tb.close();
  });

  const client = (prefix: string, key: string) =>
    new Anthropic({ apiKey: key, baseURL: `${tb.url}/${prefix}`, maxRetries: 0 });
  async function list(prefix: string, key: string): Promise<Anthropic.ModelInfo[]> {
    const out: Anthropic.ModelInfo[] = [];
    for await (const m of client(prefix, key).models.list()) out.push(m);
    return out;
  }

  it('Bedrock lists the names its models map gives, not the price data’s names Bedrock would refuse', async () => {
    const models = await list('bedrock', dev.key);
    assert.deepEqual(
      models.map((m) => m.id),
      ['quick', 'claude-haiku-4-5-20251001', 'sonnet'],
      'the alias of a mapped name first; `fast` (claude-haiku-4-5, unmapped) is not served here',
    );
    assert.equal(models[1]!.display_name, 'Claude Haiku 4.5');
    assert.equal(models[2]!.display_name, 'Claude Sonnet 4.5', 'named as the model its profile is');
    const one = await client('bedrock', dev.key).models.retrieve('sonnet');
    assert.equal(one.id, 'sonnet');
  });

  it('Bedrock: a mapped name is judged as the model it stands for', async () => {
    const ids = (await list('bedrock', ml.key)).map((m) => m.id);
    assert.deepEqual(ids, ['quick', 'claude-haiku-4-5-20251001'], 'claude-sonnet-* is denied to ml');
    await assert.rejects(client('bedrock', ml.key).models.retrieve('sonnet'), NotFoundError);
  });

  it('Vertex AI lists Anthropic’s names (sent as Vertex spells them) and its own map’s', async () => {
    const models = await list('vertex', dev.key);
    const ids = models.map((m) => m.id);
    for (const id of ['fast', 'quick', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'house-opus'])
      assert.ok(ids.includes(id), id);
    assert.equal(models.find((m) => m.id === 'house-opus')!.display_name, 'Claude Opus 4.1');
    const res = await fetch(`${tb.url}/vertex/v1/models`, { headers: { 'x-api-key': dev.key } });
    assert.equal(res.headers.get('x-aibridge-model-list'), 'caller');
  });
});
