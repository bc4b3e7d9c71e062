import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import type { ModelAlias } from '../../shared/aliases';
import { codexHome, runClaude, runCodexExec } from '../helpers/agent-cli';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { everythingStdio } from '../helpers/mcp-servers';
import { OPENAI_TEXT, OpenAIMock } from '../helpers/openai-mock';
import { testPostgres } from '../helpers/postgres';
import { ToolModelMock } from '../helpers/tool-model-mock';

/** A providers file with nothing but aliases (and the empty providers table it requires). */
async function providersFile(aliases: unknown): Promise<string> {
  const file = path.join(await tempDir('aibridge-aliases-'), 'providers.json');
  await fs.writeFile(file, JSON.stringify({ providers: {}, aliases }));
  return file;
}

describe('model aliases', () => {
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string };
  let platform: { key: string };
  let claude: Anthropic;
  let gpt: OpenAI;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    const file = await providersFile({
      fast: 'claude-haiku-4-5',
      quick: 'gpt-5-mini',
      teams: { platform: { fast: 'claude-sonnet-4-6' } },
    });
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_PROVIDERS_FILE: file,
    });
    dev = await tb.addUser('alias-dev@example.com', { team: 'ml' });
    platform = await tb.addUser('alias-platform@example.com', { team: 'platform' });
    claude = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    gpt = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  async function latest(key: string, n: number) {
    return (await tb.interceptions(n, key))[0]!;
  }
  async function count(key: string): Promise<number> {
    return (await tb.interceptions(0, key)).length;
  }
  function upstreamModel(body: string): unknown {
    return (JSON.parse(body) as { model?: unknown }).model;
  }

  describe('Anthropic Messages', () => {
    it('JSON: the SDK sees the alias, the upstream the real model, the record both', async () => {
      const n = await count(dev.key);
      const msg = await claude.messages.create({
        model: 'fast',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(msg.model, 'fast');
      assert.equal(upstreamModel(anthropic.messageRequests().at(-1)!.body), 'claude-haiku-4-5');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'claude-haiku-4-5');
      assert.equal(rec.alias, 'fast');
      assert.ok(rec.costUsd !== null && rec.costUsd > 0, 'priced as the real model');
    });

    it('stream: message_start names the alias; the final message too', async () => {
      const n = await count(dev.key);
      const stream = claude.messages.stream({
        model: 'fast',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const started: string[] = [];
      for await (const ev of stream) if (ev.type === 'message_start') started.push(ev.message.model);
      const final = await stream.finalMessage();
      assert.deepEqual(started, ['fast']);
      assert.equal(final.model, 'fast');
      assert.equal(upstreamModel(anthropic.messageRequests().at(-1)!.body), 'claude-haiku-4-5');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'claude-haiku-4-5');
      assert.equal(rec.alias, 'fast');
      assert.equal(rec.streamed, true);
      assert.ok(rec.usage.output > 0, 'the stream is still metered');
    });

    it('a team’s own alias wins over everyone’s for its members', async () => {
      const n = await count(platform.key);
      const c = new Anthropic({ apiKey: platform.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
      const msg = await c.messages.create({
        model: 'fast',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(msg.model, 'fast');
      assert.equal(upstreamModel(anthropic.messageRequests().at(-1)!.body), 'claude-sonnet-4-6');
      const rec = await latest(platform.key, n + 1);
      assert.equal(rec.model, 'claude-sonnet-4-6');
      assert.equal(rec.alias, 'fast');
    });

    it('count tokens (a passthrough) asks the provider for the real model, not the alias it does not know', async () => {
      const r = await claude.messages.countTokens({
        model: 'fast',
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(r.input_tokens, 42);
      const up = anthropic.requests.filter((q) => q.url === '/v1/messages/count_tokens').at(-1)!;
      assert.equal(upstreamModel(up.body), 'claude-haiku-4-5');
      // A real model's count goes up as it came.
      const raw = '{"model":"claude-sonnet-4-6",  "messages":[{"role":"user","content":"hi"}]}';
      const res = await fetch(`${tb.url}/anthropic/v1/messages/count_tokens`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: raw,
      });
      assert.equal(res.status, 200);
      assert.equal(anthropic.requests.at(-1)!.body, raw);
    });

    it('a request that names a real model goes up byte for byte, and its record has no alias', async () => {
      const n = await count(dev.key);
      const body = '{"model":"claude-haiku-4-5",  "max_tokens":5,"messages":[{"role":"user","content":"x"}]}';
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body,
      });
      assert.equal(res.status, 200);
      assert.equal(anthropic.messageRequests().at(-1)!.body, body);
      assert.equal(((await res.json()) as { model: string }).model, 'claude-haiku-4-5');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.alias, undefined);
    });
  });

  it('the real claude CLI with `--model fast`: answered, the upstream saw the real model, the record has the alias', async function () {
    this.timeout(120_000);
    const user = await tb.addUser('alias-claude@example.com', { team: 'ml' });
    const home = await tempDir('aibridge-claude-home-');
    const before = anthropic.messageRequests().length;
    const res = await runClaude({ bridgeUrl: tb.url, key: user.key, home }, [
      '--model',
      'fast',
      '-p',
      'Say hi',
    ]);
    assert.equal(res.stdout.trim(), MOCK_TEXT);
    const models = anthropic
      .messageRequests()
      .slice(before)
      .map((r) => upstreamModel(r.body));
    assert.ok(models.includes('claude-haiku-4-5'), JSON.stringify(models));
    assert.ok(!models.includes('fast'), 'the alias never goes upstream');
    const recs = await tb.interceptions(1, user.key);
    const mine = recs.find((r) => r.prompt === 'Say hi');
    assert.ok(mine, JSON.stringify(recs.map((r) => [r.prompt, r.model, r.alias])));
    assert.equal(mine.model, 'claude-haiku-4-5');
    assert.equal(mine.alias, 'fast');
    assert.equal(mine.client, 'claude-code');
  });

  it('the real codex CLI with `model = "quick"`: answered, the upstream saw the real model, the record has the alias', async function () {
    this.timeout(120_000);
    const user = await tb.addUser('alias-codex@example.com', { team: 'ml' });
    const before = openai.modelRequests().length;
    const home = await codexHome(`${tb.url}/openai/v1`, { model: 'quick' });
    const res = await runCodexExec({ home, key: user.key }, 'Say hi from codex');
    assert.ok(res.stdout.includes(OPENAI_TEXT), `codex output: ${res.stdout}\n${res.stderr}`);
    const models = openai
      .modelRequests()
      .slice(before)
      .map((r) => upstreamModel(r.body));
    assert.ok(models.length >= 1 && models.every((m) => m === 'gpt-5-mini'), JSON.stringify(models));
    const recs = await tb.interceptions(1, user.key);
    const mine = recs.find((r) => r.prompt?.includes('Say hi from codex'));
    assert.ok(mine, JSON.stringify(recs.map((r) => [r.prompt, r.model, r.alias])));
    assert.equal(mine.model, 'gpt-5-mini');
    assert.equal(mine.alias, 'quick');
    assert.equal(mine.client, 'codex');
  });

  describe('OpenAI Chat Completions', () => {
    it('JSON: the SDK sees the alias; the upstream and the record the real model', async () => {
      const n = await count(dev.key);
      const res = await gpt.chat.completions.create({
        model: 'quick',
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.equal(res.model, 'quick');
      assert.equal(upstreamModel(openai.modelRequests().at(-1)!.body), 'gpt-5-mini');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'gpt-5-mini');
      assert.equal(rec.alias, 'quick');
    });

    it('stream: every chunk names the alias, and usage the client did not ask for stays hidden', async () => {
      const n = await count(dev.key);
      const stream = await gpt.chat.completions.create({
        model: 'quick',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
      });
      const models = new Set<string>();
      let chunks = 0;
      let usageSeen = false;
      for await (const chunk of stream) {
        chunks++;
        models.add(chunk.model);
        if (chunk.usage) usageSeen = true;
      }
      assert.ok(chunks > 1);
      assert.deepEqual([...models], ['quick']);
      assert.equal(usageSeen, false);
      assert.equal(upstreamModel(openai.modelRequests().at(-1)!.body), 'gpt-5-mini');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'gpt-5-mini');
      assert.equal(rec.alias, 'quick');
      assert.ok(rec.usage.output > 0, 'metered from the usage chunk the bridge asked for');
    });
  });

  describe('OpenAI Responses', () => {
    it('JSON: the SDK sees the alias; the upstream and the record the real model', async () => {
      const n = await count(dev.key);
      const res = await gpt.responses.create({ model: 'quick', input: 'hi' });
      assert.equal(res.model, 'quick');
      assert.equal(upstreamModel(openai.modelRequests().at(-1)!.body), 'gpt-5-mini');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'gpt-5-mini');
      assert.equal(rec.alias, 'quick');
    });

    it('stream: response.created, in_progress and completed name the alias', async () => {
      const n = await count(dev.key);
      const stream = await gpt.responses.create({ model: 'quick', input: 'hi', stream: true });
      const named: Record<string, string> = {};
      for await (const ev of stream)
        if ('response' in ev && ev.response && typeof ev.response === 'object' && 'model' in ev.response)
          named[ev.type] = ev.response.model as string;
      assert.equal(named['response.created'], 'quick');
      assert.equal(named['response.completed'], 'quick');
      for (const m of Object.values(named)) assert.equal(m, 'quick');
      assert.equal(upstreamModel(openai.modelRequests().at(-1)!.body), 'gpt-5-mini');
      const rec = await latest(dev.key, n + 1);
      assert.equal(rec.model, 'gpt-5-mini');
      assert.equal(rec.alias, 'quick');
      assert.ok(rec.usage.output > 0);
    });
  });

  it('model policy applies to the real model: an alias to a denied model is refused, upstream never asked', async () => {
    const put = await tb.api('PUT', '/api/v1/teams/ml/models', tb.adminKey, { deny: ['claude-haiku-*'] });
    assert.equal(put.status, 200);
    try {
      const before = anthropic.messageRequests().length;
      const err = await claude.messages
        .create({ model: 'fast', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof APIError);
      assert.equal(err.status, 403);
      assert.match(err.message, /claude-haiku-4-5/);
      assert.equal(anthropic.messageRequests().length, before);
    } finally {
      await tb.api('DELETE', '/api/v1/teams/ml/models', tb.adminKey);
    }
  });

  describe('admin API', () => {
    it('lists the file’s aliases, overrides one, and falls back to the file’s when the override goes', async () => {
      const list = await tb.api<{ items: ModelAlias[] }>('GET', '/api/v1/aliases', tb.adminKey);
      assert.equal(list.status, 200);
      assert.deepEqual(
        list.body.items.map((a) => [a.alias, a.model, a.team, a.source]),
        [
          ['fast', 'claude-haiku-4-5', null, 'file'],
          ['quick', 'gpt-5-mini', null, 'file'],
          ['fast', 'claude-sonnet-4-6', 'platform', 'file'],
        ],
      );
      const put = await tb.api<ModelAlias>('PUT', '/api/v1/aliases/fast', tb.adminKey, {
        model: 'claude-opus-4-6',
      });
      assert.equal(put.status, 200);
      assert.equal(put.body.source, 'admin');
      const msg = await claude.messages.create({
        model: 'fast',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(msg.model, 'fast');
      assert.equal(upstreamModel(anthropic.messageRequests().at(-1)!.body), 'claude-opus-4-6');

      const del = await tb.api<ModelAlias>('DELETE', '/api/v1/aliases/fast', tb.adminKey);
      assert.equal(del.status, 200);
      await claude.messages.create({
        model: 'fast',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(upstreamModel(anthropic.messageRequests().at(-1)!.body), 'claude-haiku-4-5');

      const again = await tb.api<{ error: { code: string; message: string } }>(
        'DELETE',
        '/api/v1/aliases/fast',
        tb.adminKey,
      );
      assert.equal(again.status, 404);
      assert.match(JSON.stringify(again.body), /alias_not_found/);
      assert.match(JSON.stringify(again.body), /providers file/);
    });

    it('a new team alias is served at once and removed with ?team=', async () => {
      const put = await tb.api('PUT', '/api/v1/aliases/smart', tb.adminKey, { model: 'gpt-5', team: 'ml' });
      assert.equal(put.status, 200);
      const res = await gpt.chat.completions.create({
        model: 'smart',
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(res.model, 'smart');
      assert.equal(upstreamModel(openai.modelRequests().at(-1)!.body), 'gpt-5');
      assert.equal(
        (await tb.api('DELETE', '/api/v1/aliases/smart', tb.adminKey)).status,
        404,
        'not everyone’s',
      );
      assert.equal((await tb.api('DELETE', '/api/v1/aliases/smart?team=ml', tb.adminKey)).status, 200);
    });

    it('refuses bad entries with 400 naming the entry', async () => {
      const cases: [string, unknown, RegExp][] = [
        ['bad%20name', { model: 'gpt-5' }, /aliases\.bad name: the name must match/],
        ['teams', { model: 'gpt-5' }, /aliases\.teams: the name must/],
        ['gpt-5', { model: 'gpt-5-mini' }, /aliases\.gpt-5: .*shadow a model/],
        ['chain', { model: 'fast' }, /aliases\.chain: "fast" is itself an alias/],
        ['self', { model: 'self' }, /aliases\.self: .*no chains/],
        ['claude-haiku-4-5x', { model: 'not a model' }, /is not a model id/],
      ];
      for (const [name, body, why] of cases) {
        const res = await tb.api<{ error: { code: string; message: string } }>(
          'PUT',
          `/api/v1/aliases/${name}`,
          tb.adminKey,
          body,
        );
        assert.equal(res.status, 400, name);
        assert.match(res.body.error.message, why, name);
      }
      // Naming an alias after what another alias points to would chain them too.
      const named = await tb.api<{ error: { message: string } }>(
        'PUT',
        '/api/v1/aliases/claude-haiku-4-5',
        tb.adminKey,
        { model: 'claude-opus-4-6' },
      );
      assert.equal(named.status, 400);
      const member = await tb.api('PUT', '/api/v1/aliases/x', dev.key, { model: 'gpt-5' });
      assert.equal(member.status, 403, 'admins only');
    });
  });

  it('refuses a providers file whose aliases break a rule at start, naming the entry', async () => {
    for (const [aliases, why] of [
      [{ a: 'b', b: 'gpt-5' }, /aliases\.a: "b" is itself an alias/],
      [{ 'gpt-5': 'gpt-5-mini' }, /aliases\.gpt-5: .*shadow/],
      [{ ok: 42 }, /aliases\.ok: expected a model id/],
      [{ teams: { platform: { 'x y': 'gpt-5' } } }, /aliases\.teams\.platform\.x y: the name must match/],
    ] as const) {
      const file = await providersFile(aliases);
      await assert.rejects(
        startBridge(anthropic.url, { AIBRIDGE_PROVIDERS_FILE: file }),
        (err: Error) => why.test(err.message) && /AIBRIDGE_PROVIDERS_FILE/.test(err.message),
      );
    }
  });

  it('an alias and a route of one name are refused wherever either is set: the route would never be used', async () => {
    const file = path.join(await tempDir('aibridge-aliases-'), 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {},
        aliases: { best: 'claude-haiku-4-5' },
        routes: { best: ['anthropic:claude-opus-4-1', 'anthropic:claude-sonnet-4-5'] },
      }),
    );
    await assert.rejects(startBridge(anthropic.url, { AIBRIDGE_PROVIDERS_FILE: file }), (err: Error) =>
      /AIBRIDGE_PROVIDERS_FILE: aliases\.best: "best" is a route's name/.test(err.message),
    );
    // At run time, either way round.
    await fs.writeFile(
      file,
      JSON.stringify({ providers: {}, routes: { best: ['anthropic:claude-opus-4-1'] } }),
    );
    const tb = await startBridge(anthropic.url, { AIBRIDGE_PROVIDERS_FILE: file });
    try {
      const alias = await tb.api<{ error: { message: string } }>('PUT', '/api/v1/aliases/best', tb.adminKey, {
        model: 'claude-haiku-4-5',
      });
      assert.equal(alias.status, 400);
      assert.match(alias.body.error.message, /"best" is a route's name/);
      const made = await tb.api('PUT', '/api/v1/aliases/quick', tb.adminKey, { model: 'claude-haiku-4-5' });
      assert.equal(made.status, 200);
      const route = await tb.api<{ error: { code: string; message: string } }>(
        'PUT',
        '/api/v1/routes',
        tb.adminKey,
        {
          routes: { quick: ['anthropic:claude-sonnet-4-5'] },
        },
      );
      assert.equal(route.status, 400);
      assert.equal(route.body.error.code, 'invalid_routes');
      assert.match(route.body.error.message, /routes\.quick: "quick" is an alias's name/);
      // Once the route is gone from the table, the name is free for an alias.
      const cleared = await tb.api('PUT', '/api/v1/routes', tb.adminKey, { routes: {} });
      assert.equal(cleared.status, 200);
      const now = await tb.api('PUT', '/api/v1/aliases/best', tb.adminKey, { model: 'claude-haiku-4-5' });
      assert.equal(now.status, 200);
    } finally {
      await tb.close();
    }
  });

  it('two replicas on one database: an alias set on one is served by the other, and its removal too', async () => {
    const env = {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('aliases'),
      AIBRIDGE_PROVIDERS_FILE: await providersFile({ fast: 'claude-haiku-4-5' }),
    };
    const a = await startBridge(anthropic.url, env);
    const b = await startBridge(anthropic.url, env, a.dataDir);
    try {
      const user = await a.addUser('replica-dev@example.com', { team: 'ml' });
      const onB = new Anthropic({ apiKey: user.key, baseURL: `${b.url}/anthropic`, maxRetries: 0 });
      const ask = async (): Promise<unknown> => {
        const msg = await onB.messages.create({
          model: 'fast',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        });
        assert.equal(msg.model, 'fast');
        return upstreamModel(anthropic.messageRequests().at(-1)!.body);
      };
      assert.equal(await ask(), 'claude-haiku-4-5');
      assert.equal(
        (await a.api('PUT', '/api/v1/aliases/fast', a.adminKey, { model: 'claude-opus-4-6' })).status,
        200,
      );
      await eventually(async () => ((await ask()) === 'claude-opus-4-6' ? true : undefined));
      assert.equal((await a.api('DELETE', '/api/v1/aliases/fast', a.adminKey)).status, 200);
      await eventually(async () => ((await ask()) === 'claude-haiku-4-5' ? true : undefined));
    } finally {
      await b.close();
      await a.close();
    }
  });

  describe('Gemini (the model in the path)', () => {
    let gemini: GeminiMock;
    let gb: TestBridge;
    let key: string;
    before(async () => {
      gemini = await startGeminiMock();
      gb = await startBridge(anthropic.url, {
        AIBRIDGE_GEMINI_BASE_URL: gemini.origin,
        AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
        AIBRIDGE_PROVIDERS_FILE: await providersFile({ flash: 'gemini-2.5-flash' }),
      });
      key = (await gb.addUser('alias-gemini@example.com')).key;
    });
    after(async () => {
      await gb.close();
      await gemini.stop();
    });
    const sdk = () => new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${gb.url}/gemini` } });

    it('generateContent and its stream: the path goes up with the real model, modelVersion comes back as the alias', async () => {
      const res = await sdk().models.generateContent({ model: 'flash', contents: 'hi' });
      assert.equal(res.text, 'Bonjour');
      assert.equal(res.modelVersion, 'flash');
      assert.equal(gemini.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:generateContent');
      const stream = await sdk().models.generateContentStream({ model: 'flash', contents: 'hi' });
      const versions = new Set<string | undefined>();
      for await (const chunk of stream) versions.add(chunk.modelVersion);
      assert.deepEqual([...versions], ['flash']);
      assert.equal(gemini.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
      const [streamed, whole] = await gb.interceptions(2, key);
      for (const rec of [streamed!, whole!]) {
        assert.equal(rec.model, 'gemini-2.5-flash');
        assert.equal(rec.alias, 'flash');
      }
    });

    it('countTokens (a passthrough) goes up with the real model in the path', async () => {
      const r = await sdk().models.countTokens({ model: 'flash', contents: 'hi' });
      assert.equal(r.totalTokens, 42);
      assert.equal(gemini.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:countTokens');
    });
  });

  describe('with MCP tools injected (more than one round)', () => {
    let tools: ToolModelMock;
    let mb: TestBridge;
    let c: Anthropic;
    let o: OpenAI;
    let key: string;
    before(async function () {
      this.timeout(60_000);
      tools = await new ToolModelMock().start();
      const dir = await tempDir();
      await fs.writeFile(
        path.join(dir, 'mcp-servers.json'),
        JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
      );
      mb = await startBridge(
        tools.url,
        {
          AIBRIDGE_OPENAI_BASE_URL: `${tools.url}/v1`,
          AIBRIDGE_PROVIDERS_FILE: await providersFile({ fast: 'claude-sonnet-4-6', quick: 'gpt-5-mini' }),
        },
        dir,
      );
      await mb.bridge.mcp.ready();
      key = (await mb.addUser('alias-mcp@example.com')).key;
      c = new Anthropic({ apiKey: key, baseURL: `${mb.url}/anthropic`, maxRetries: 0 });
      o = new OpenAI({ apiKey: key, baseURL: `${mb.url}/openai/v1`, maxRetries: 0 });
    });
    after(async () => {
      await mb.close();
      await tools.stop();
    });

    it('the composed answer and the composed stream name the alias; every round went up as the real model', async function () {
      this.timeout(60_000);
      const seen = tools.requests.length;
      const msg = await c.messages.create({
        model: 'fast',
        max_tokens: 200,
        messages: [{ role: 'user', content: 'Echo something' }],
      });
      assert.equal(msg.model, 'fast');
      const stream = c.messages.stream({
        model: 'fast',
        max_tokens: 200,
        messages: [{ role: 'user', content: 'Echo' }],
      });
      const started: string[] = [];
      for await (const ev of stream) if (ev.type === 'message_start') started.push(ev.message.model);
      assert.deepEqual(started, ['fast']);
      const chunks = await o.chat.completions.create({
        model: 'quick',
        messages: [{ role: 'user', content: 'Echo' }],
        stream: true,
      });
      const named = new Set<string>();
      for await (const ch of chunks) named.add(ch.model);
      assert.deepEqual([...named], ['quick']);
      const up = tools.requests.slice(seen).map((r) => (r.body as { model?: unknown }).model);
      assert.ok(up.length >= 6, 'two rounds each');
      assert.ok(
        up.every((m) => m === 'claude-sonnet-4-6' || m === 'gpt-5-mini'),
        JSON.stringify(up),
      );
      const recs = await mb.interceptions(up.length, key);
      assert.ok(
        recs.every((r) => r.alias === 'fast' || r.alias === 'quick'),
        'every round is recorded with the alias',
      );
    });
  });
});
