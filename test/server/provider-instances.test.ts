import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { APIError, AzureOpenAI } from 'openai';
import { loadConfig } from '../../server/config';
import { RESERVED_NAMES } from '../../server/provider-config';
import { joinUrl, KEY_REQUIRED, NO_FIELDS, type ProviderFamily } from '../../server/providers/family';
import { chatCompletionsApi } from '../../server/providers/openai/chat-completions';
import { openaiErrorBody } from '../../server/providers/openai/errors';
import { registerFamily } from '../../server/providers/registry';
import { AnthropicMock, MOCK_TEXT, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { AZURE_KEY, AZURE_USAGE, COMPAT_TEXT, CompatMock, OLLAMA_USAGE } from '../helpers/compat-mocks';

/** A family that exists only here: a provider defined in one place (this object) is served. */
const testFamily: ProviderFamily = {
  type: 'test-chat',
  defaultBaseUrl: undefined,
  priceId: null,
  fields: [],
  validate: NO_FIELDS,
  configured: KEY_REQUIRED,
  create: (s) => ({
    id: s.name,
    type: 'test-chat',
    prefix: `/${s.name}`,
    requestIdHeader: 'x-request-id',
    apis: [{ ...chatCompletionsApi, path: '/v1/chat/completions' }],
    passthrough: [],
    configured: s.apiKey !== undefined,
    upstreamUrl: (target) => joinUrl(s.baseUrl, target),
    authHeaders: async (): Promise<Record<string, string>> => ({ 'x-test-key': s.apiKey ?? '' }),
    errorBody: openaiErrorBody,
  }),
};

async function writeProviders(dir: string, providers: unknown): Promise<string> {
  const file = path.join(dir, `providers-${Math.random().toString(36).slice(2)}.json`);
  await fs.writeFile(file, JSON.stringify(providers));
  return file;
}

describe('provider instances from a providers file', () => {
  let anthropic: AnthropicMock;
  let ollama: CompatMock;
  let azure: CompatMock;
  let tb: TestBridge;
  let dev: { key: string };
  let unregister: () => void;

  before(async () => {
    unregister = registerFamily(testFamily);
    anthropic = await new AnthropicMock().start();
    ollama = await new CompatMock('ollama').start();
    azure = await new CompatMock('azure').start();
    const dir = await tempDir();
    const file = await writeProviders(dir, {
      providers: {
        // The built-in route, redefined: another upstream and a key from another variable.
        anthropic: { type: 'anthropic', baseUrl: anthropic.url, apiKey: { fromEnv: 'TEST_ANTHROPIC_KEY' } },
        ollama: { type: 'openai-compatible', baseUrl: `${ollama.url}/v1`, prices: 'free' },
        vllm: {
          type: 'openai-compatible',
          baseUrl: `${ollama.url}/v1/`,
          prices: { 'llama3.2': { inputPerMTok: 1, outputPerMTok: 2 } },
        },
        // A server that rejects stream_options: the bridge must not add it.
        strict: {
          type: 'openai-compatible',
          baseUrl: `${ollama.url}/v1`,
          includeUsage: false,
          prices: 'free',
        },
        azure: {
          type: 'azure-openai',
          baseUrl: `${azure.url}/openai/v1`,
          apiKey: { fromEnv: 'TEST_AZURE_KEY' },
          deployments: { 'prod-4o': 'gpt-4o' },
        },
        'azure-eu': { type: 'azure-openai', baseUrl: azure.url, apiKey: AZURE_KEY },
        echo: { type: 'test-chat', baseUrl: `${ollama.url}`, apiKey: 'k' },
      },
    });
    tb = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_PROVIDERS_FILE: file,
      TEST_ANTHROPIC_KEY: UPSTREAM_KEY,
      // The environment's built-in settings lose to the file's.
      AIBRIDGE_ANTHROPIC_API_KEY: 'sk-ant-not-this-one',
      TEST_AZURE_KEY: AZURE_KEY,
    });
    dev = await tb.addUser('instances@example.com');
  });

  after(async () => {
    await tb?.close();
    await Promise.all([anthropic?.stop(), ollama?.stop(), azure?.stop()]);
    unregister();
  });

  async function latest(n: number) {
    return (await tb.interceptions(n, dev.key))[0]!;
  }

  describe('openai-compatible (Ollama-shaped)', () => {
    it('streams without usage to a client that did not ask, and still meters it at $0 on purpose', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/ollama/v1`, maxRetries: 0 });
      const stream = await client.chat.completions.create({
        model: 'llama3.2',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
      for await (const c of stream) chunks.push(c);
      assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), COMPAT_TEXT);
      assert.ok(
        chunks.every((c) => c.choices.length > 0 && !('usage' in c)),
        'the usage chunk the bridge asked for is hidden',
      );
      const sent = JSON.parse(ollama.requests.at(-1)!.body) as {
        stream_options?: { include_usage?: boolean };
      };
      assert.equal(sent.stream_options?.include_usage, true, 'include_usage forced upstream');
      assert.equal(ollama.requests.at(-1)!.url, '/v1/chat/completions');
      assert.equal(
        ollama.requests.at(-1)!.headers.authorization,
        undefined,
        'no key: none sent, not the client’s',
      );
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'ollama');
      assert.equal(rec.usage.input, OLLAMA_USAGE.prompt);
      assert.equal(rec.usage.output, OLLAMA_USAGE.completion);
      assert.equal(rec.costUsd, 0);
      assert.equal(rec.priceKnown, true);
      assert.equal(rec.costSource, 'free');
    });

    it('passes the usage chunk byte for byte to a client that asked for it', async () => {
      const res = await fetch(`${tb.url}/ollama/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'llama3.2',
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: 'user', content: 'hi' }],
        }),
      });
      const text = await res.text();
      assert.match(text, /"choices":\[\],"usage":\{"prompt_tokens":26/);
      assert.ok(text.endsWith('data: [DONE]\n\n'));
    });

    it('with includeUsage false, sends the client’s bytes unchanged and relays the stream untouched', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const body = JSON.stringify({
        model: 'llama3.2',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const res = await fetch(`${tb.url}/strict/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
        body,
      });
      const text = await res.text();
      assert.equal(ollama.requests.at(-1)!.body, body, 'byte for byte');
      assert.doesNotMatch(text, /usage/);
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'strict');
      // The server sent no usage: the record says so, with a floor from what the stream showed.
      assert.equal(rec.usageEstimated, true);
      assert.equal(rec.usage.input, Math.ceil(body.length / 4), 'the body at four bytes a token');
      assert.ok(rec.usage.output > 0, 'a token per chunk relayed');
    });

    it('prices a model from the instance’s own table; two instances of one type are separate', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/vllm/v1`, maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'llama3.2',
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(r.choices[0]!.message.content, COMPAT_TEXT);
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'vllm');
      assert.equal(rec.costSource, 'instance');
      assert.equal(rec.costUsd, (OLLAMA_USAGE.prompt * 1 + OLLAMA_USAGE.completion * 2) / 1e6);
    });
  });

  describe('azure-openai', () => {
    it('serves the v1 API with the api-key header; a deployment is priced as its model', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure/v1`, maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'prod-4o',
        messages: [{ role: 'user', content: 'hello' }],
        tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
      });
      assert.equal(r.choices[0]!.message.tool_calls?.[0]?.id, 'call_1');
      const seen = azure.requests.at(-1)!;
      assert.equal(seen.url, '/openai/v1/chat/completions');
      assert.equal(seen.headers['api-key'], AZURE_KEY);
      assert.equal(seen.headers.authorization, undefined, 'the bridge key is not forwarded');
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'azure');
      assert.equal(rec.model, 'gpt-4o');
      assert.equal(rec.toolCalls[0]?.name, 'get_weather');
      assert.equal(rec.usage.input, AZURE_USAGE.prompt);
      assert.equal(rec.priceKnown, true);
      assert.ok(rec.costUsd !== null && rec.costUsd > 0);
      assert.ok(rec.upstreamRequestId, 'apim-request-id kept');
    });

    it('a deployment named in another letter case is its mapped model (priced, recorded and judged as it)', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure/v1`, maxRetries: 0 });
      await client.chat.completions.create({ model: 'PROD-4O', messages: [{ role: 'user', content: 'hi' }] });
      const rec = await latest(before + 1);
      assert.equal(rec.model, 'gpt-4o', 'recorded as the model the deployment serves, not as PROD-4O');
    });

    /** One streamed turn through the deployments form on `azure-eu`; what the mock received. */
    async function streamDeployment(apiVersion: string): Promise<(typeof azure.requests)[number]> {
      const client = new AzureOpenAI({
        endpoint: `${tb.url}/azure-eu`,
        apiKey: dev.key,
        deployment: 'gpt-4o-mini',
        apiVersion,
        maxRetries: 0,
      });
      const stream = await client.chat.completions.create({
        model: 'ignored',
        stream: true,
        messages: [{ role: 'user', content: 'hello' }],
      });
      let text = '';
      for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
      assert.equal(text, COMPAT_TEXT);
      const seen = azure.requests.at(-1)!;
      assert.equal(seen.url, `/openai/deployments/gpt-4o-mini/chat/completions?api-version=${apiVersion}`);
      return seen;
    }

    it('serves the deployments form to the AzureOpenAI SDK on a second instance, streaming', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const seen = await streamDeployment('2024-10-21');
      assert.equal(seen.headers['api-key'], AZURE_KEY, 'the organisation key, not the client’s api-key');
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'azure-eu');
      assert.equal(rec.model, 'gpt-4o-mini');
      assert.equal(rec.usage.output, AZURE_USAGE.completion);
      assert.ok(rec.costUsd !== null && rec.costUsd > 0);
    });

    it('streams to an AzureOpenAI client on an api-version older than stream_options, usage floored', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const seen = await streamDeployment('2024-06-01');
      // Sent as the client sent it: that version answers `stream_options` with a 400.
      assert.equal((JSON.parse(seen.body) as { stream_options?: unknown }).stream_options, undefined);
      const rec = await latest(before + 1);
      assert.equal(rec.status, 'ok');
      assert.equal(rec.usageEstimated, true, 'no usage in the stream: floored, not free');
      assert.ok(rec.usage.input > 0 && rec.usage.output > 0, JSON.stringify(rec.usage));
      assert.ok(rec.costUsd !== null && rec.costUsd > 0);
    });

    it('serves Responses to the AzureOpenAI SDK at its dated path, priced as the deployment’s model', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new AzureOpenAI({
        endpoint: `${tb.url}/azure`,
        apiKey: dev.key,
        apiVersion: '2025-04-01-preview',
        maxRetries: 0,
      });
      const r = await client.responses.create({ model: 'prod-4o', input: 'hello' });
      assert.equal(r.output_text, COMPAT_TEXT);
      const seen = azure.requests.at(-1)!;
      assert.equal(seen.url, '/openai/responses?api-version=2025-04-01-preview');
      assert.equal(seen.headers['api-key'], AZURE_KEY);
      const rec = await latest(before + 1);
      assert.equal(rec.provider, 'azure');
      assert.equal(rec.api, 'responses');
      assert.equal(rec.model, 'gpt-4o');
      assert.equal(rec.usage.input, AZURE_USAGE.prompt);
      assert.ok(rec.costUsd !== null && rec.costUsd > 0);
    });

    it("refuses a member's stored conversation on each of its Responses paths, as OpenAI's instances do", async () => {
      const sent = azure.requests.length;
      const v1 = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure/v1`, maxRetries: 0 });
      const dated = new AzureOpenAI({
        endpoint: `${tb.url}/azure`,
        apiKey: dev.key,
        apiVersion: '2025-04-01-preview',
        maxRetries: 0,
      });
      for (const [what, client] of [
        ['v1', v1],
        ['dated', dated],
      ] as const) {
        const err = await client.responses
          .create({ model: 'prod-4o', input: 'go on', conversation: 'conv_azure_other' })
          .then(
            () => assert.fail(`${what}: the conversation went upstream`),
            (e: unknown) => e,
          );
        assert.ok(err instanceof OpenAI.NotFoundError, `${what}: ${String(err)}`);
      }
      assert.equal(azure.requests.length, sent, 'nothing reached Azure');
    });

    it('prices a deployment not in the map as the model its answer names, not as price unknown', async () => {
      const before = (await tb.interceptions(0, dev.key)).length;
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure/v1`, maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: 'team-chat',
        messages: [{ role: 'user', content: 'hello' }],
      });
      assert.equal(r.model, 'gpt-4o-2024-11-20', 'Azure names the deployed model');
      const rec = await latest(before + 1);
      assert.equal(rec.model, 'team-chat', 'recorded as the client named it');
      assert.equal(rec.priceKnown, true);
      // gpt-4o on Azure: $2.50 in, $10 out per million.
      assert.ok(
        rec.costUsd !== null &&
          Math.abs(rec.costUsd - (AZURE_USAGE.prompt * 2.5 + AZURE_USAGE.completion * 10) / 1e6) < 1e-12,
        String(rec.costUsd),
      );
      const unknown = await tb.api<{ models: { model: string }[] }>(
        'GET',
        '/api/v1/prices/unknown',
        tb.adminKey,
      );
      assert.ok(!JSON.stringify(unknown.body).includes('team-chat'), 'not listed as unknown');
    });

    it('maps a content-filter refusal to OpenAI’s error shape', async () => {
      const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure/v1`, maxRetries: 0 });
      const err = await client.chat.completions
        .create({ model: 'prod-4o', messages: [{ role: 'user', content: 'something forbidden' }] })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      assert.ok(err instanceof APIError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'content_filter');
      assert.equal(err.param, 'prompt');
      assert.deepEqual(Object.keys(err.error as object).sort(), ['code', 'message', 'param', 'type']);
      const rec = await latest(1);
      assert.equal(rec.status, 'error');
      assert.equal(rec.provider, 'azure');
    });
  });

  it('serves the redefined anthropic instance with the file’s upstream and key', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': dev.key,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    assert.equal(res.status, 200);
    assert.match(await res.text(), new RegExp(MOCK_TEXT));
    assert.equal(anthropic.requests.at(-1)!.headers['x-api-key'], UPSTREAM_KEY);
    const rec = await latest(before + 1);
    assert.equal(rec.provider, 'anthropic');
  });

  it('serves a family defined only in its own object, registered with the registry', async () => {
    const before = (await tb.interceptions(0, dev.key)).length;
    const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/echo/v1`, maxRetries: 0 });
    const r = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(r.choices[0]!.message.content, COMPAT_TEXT);
    assert.equal(ollama.requests.at(-1)!.headers['x-test-key'], 'k');
    const rec = await latest(before + 1);
    assert.equal(rec.provider, 'echo');
    assert.equal(rec.priceKnown, false, 'a family without price data and no table is unknown, never $0');
  });

  it('reserves every first path segment of the bridge’s own routes', () => {
    const providers = new Set([
      'anthropic',
      'openai',
      'ollama',
      'vllm',
      'strict',
      'azure',
      'azure-eu',
      'echo',
    ]);
    const own = new Set(
      tb.bridge.routes.routes
        .map((r) => r.url.split('/')[1]!)
        .filter((seg) => seg !== '' && !providers.has(seg)),
    );
    assert.ok(own.size >= 5, [...own].join(' '));
    for (const seg of own)
      assert.ok(RESERVED_NAMES.has(seg) || !/^[a-z][a-z0-9-]*$/.test(seg), `${seg} is not reserved`);
  });

  it('refuses paths outside the instance’s allow-list', async () => {
    const res = await fetch(`${tb.url}/azure/v1/files`, { headers: { authorization: `Bearer ${dev.key}` } });
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'not_found');
  });
});

describe('the providers file is validated at start', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });

  async function problem(providers: unknown, env: Record<string, string> = {}): Promise<string> {
    const file = await writeProviders(dir, providers);
    try {
      loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file, ...env });
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail('the file was accepted');
  }

  it('names the entry and the field of each error', async () => {
    const cases: [unknown, RegExp][] = [
      [{ providers: { Bad: { type: 'openai' } } }, /providers\.Bad: the name must match/],
      [
        { providers: { admin: { type: 'openai' } } },
        /providers\.admin: "admin" is one of the bridge's own routes/,
      ],
      [{ providers: { x: { type: 'nope' } } }, /providers\.x\.type: unknown type "nope"/],
      [{ providers: { x: { type: 'openai-compatible' } } }, /providers\.x\.baseUrl: required/],
      [
        { providers: { x: { type: 'openai', baseUrl: 'ftp://h' } } },
        /providers\.x\.baseUrl: expected an http\(s\) URL/,
      ],
      [{ providers: { x: { type: 'openai', apiKey: 5 } } }, /providers\.x\.apiKey: expected a key/],
      [
        { providers: { x: { type: 'openai', apiKey: { fromEnv: 'UNSET_VAR_XYZ' } } } },
        /providers\.x\.apiKey: the environment variable UNSET_VAR_XYZ is not set/,
      ],
      [{ providers: { x: { type: 'openai', region: 'eu' } } }, /providers\.x\.region: unknown field/],
      // A misspelt top-level field would leave failover or aliases off without a word.
      [
        { providers: {}, Routes: { m: ['openai'] } },
        /"Routes" is not a field of the providers file .*did you mean "routes"\?/,
      ],
      [{ providers: {}, alias: { fast: 'gpt-5-mini' } }, /"alias" is not a field .*did you mean "aliases"\?/],
      [
        { providers: {}, fallbacks: {} },
        /"fallbacks" is not a field of the providers file \(providers, aliases, routes, byok\)$/,
      ],
      [
        {
          providers: {
            x: {
              type: 'openai-compatible',
              baseUrl: 'http://h',
              prices: { m: { inputPerMTok: -1, outputPerMTok: 1 } },
            },
          },
        },
        /providers\.x\.prices\.m\.inputPerMTok: expected a number/,
      ],
      [
        { providers: { x: { type: 'openai-compatible', baseUrl: 'http://h', prices: 'cheap' } } },
        /providers\.x\.prices: expected "free"/,
      ],
      [
        { providers: { x: { type: 'azure-openai', baseUrl: 'http://h', deployments: { d: 3 } } } },
        /providers\.x\.deployments\.d: expected a model name/,
      ],
      [
        { providers: { x: { type: 'azure-openai', baseUrl: 'http://h', auth: 'magic' } } },
        /providers\.x\.auth: expected "api-key" or "entra"/,
      ],
      [
        { providers: { x: { type: 'openai-compatible', baseUrl: 'http://h', includeUsage: 'yes' } } },
        /providers\.x\.includeUsage: expected true or false/,
      ],
      [{ nope: {} }, /AIBRIDGE_PROVIDERS_FILE: expected \{"providers"/],
    ];
    for (const [file, re] of cases) {
      const msg = await problem(file);
      assert.match(msg, /^invalid configuration: AIBRIDGE_PROVIDERS_FILE: /);
      assert.match(msg, re);
    }
  });

  it('refuses a name given twice in one object (JSON keeps the last), naming it and its line', async () => {
    const text = (body: string) => async (): Promise<string> => {
      const file = path.join(dir, 'twice.json');
      await fs.writeFile(file, body);
      try {
        loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file });
      } catch (err) {
        return (err as Error).message;
      }
      assert.fail('the file was accepted');
    };
    // Two instances under one name: the first (EU, say) would be dropped without a word.
    const instances = await text(
      '{"providers": {\n  "eu": {"type": "openai", "apiKey": "sk-eu-secret"},\n  "us": {"type": "openai"},\n  "eu": {"type": "openai", "apiKey": "sk-other"}\n}}',
    )();
    assert.match(instances, /^invalid configuration: AIBRIDGE_PROVIDERS_FILE: /);
    assert.match(instances, /providers\.eu is named twice \(line 4\): JSON keeps only the last/);
    assert.doesNotMatch(instances, /sk-eu-secret|sk-other/);
    const routes = await text('{"providers": {}, "routes": {"gpt-5": ["a"], "gpt-5": ["b"]}}')();
    assert.match(routes, /routes\.gpt-5 is named twice \(line 1\)/);
    // The same name in two objects is two names.
    const file = path.join(dir, 'apart.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          a: {
            type: 'openai-compatible',
            baseUrl: 'http://h',
            prices: { m: { inputPerMTok: 1, outputPerMTok: 1 } },
          },
          b: {
            type: 'openai-compatible',
            baseUrl: 'http://h',
            prices: { m: { inputPerMTok: 1, outputPerMTok: 1 } },
          },
        },
      }),
    );
    assert.deepEqual(
      Object.keys(loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file }).upstreams).sort(),
      ['a', 'anthropic', 'b', 'openai'],
    );
  });

  it('never echoes a key in an error', async () => {
    const msg = await problem({ providers: { x: { type: 'openai', apiKey: 'sk-secret-123', extra: 1 } } });
    assert.doesNotMatch(msg, /sk-secret-123/);
  });

  it('without a file, the built-in instances come from the environment as before', () => {
    const c = loadConfig(
      { 'data-dir': dir },
      { AIBRIDGE_ANTHROPIC_API_KEY: 'a', AIBRIDGE_OPENAI_BASE_URL: 'http://127.0.0.1:1/v1/' },
    );
    assert.deepEqual(Object.keys(c.upstreams), ['anthropic', 'openai']);
    assert.equal(c.upstreams.anthropic!.configured, true);
    assert.equal(c.upstreams.anthropic!.baseUrl, 'https://api.anthropic.com');
    assert.equal(c.upstreams.openai!.configured, false);
    assert.equal(c.upstreams.openai!.baseUrl, 'http://127.0.0.1:1/v1');
  });
});

describe('a built-in instance redefined without a baseUrl', () => {
  // docs/routing.md: "The built-in anthropic and openai instances take a pool by being redefined in
  // the file"; docs/configuration.md: AIBRIDGE_ANTHROPIC_BASE_URL is the upstream of /anthropic.
  // The redefinition used to drop the variable, sending the traffic to api.anthropic.com instead.
  let up: AnthropicMock;
  let tb: TestBridge;
  before(async () => {
    up = await new AnthropicMock().start();
    const dir = await tempDir();
    const file = await writeProviders(dir, {
      providers: {
        anthropic: { type: 'anthropic', keys: [{ name: 'k1', key: UPSTREAM_KEY }] },
      },
    });
    tb = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file }, dir);
  });
  after(async () => {
    await tb.close();
    await up.stop();
  });

  it('keeps the environment’s base URL, and the SDK reaches the configured upstream', async () => {
    const dev = await tb.addUser('pool-dev@example.com');
    const client = new Anthropic({ baseURL: `${tb.url}/anthropic`, apiKey: dev.key, maxRetries: 0 });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, MOCK_TEXT);
    assert.equal(up.messageRequests().at(-1)!.headers['x-api-key'], UPSTREAM_KEY);
  });

  it('a baseUrl in the file still wins over the environment; a redefinition without one keeps the variable', async () => {
    const dir = await tempDir();
    const file = await writeProviders(dir, {
      providers: {
        anthropic: { type: 'anthropic', baseUrl: 'http://127.0.0.1:2', apiKey: 'a' },
        openai: { type: 'openai', apiKey: 'o' },
      },
    });
    const c = loadConfig(
      { 'data-dir': dir },
      {
        AIBRIDGE_PROVIDERS_FILE: file,
        AIBRIDGE_ANTHROPIC_BASE_URL: 'http://127.0.0.1:1',
        AIBRIDGE_OPENAI_BASE_URL: 'http://127.0.0.1:3/v1',
      },
    );
    assert.equal(c.upstreams.anthropic!.baseUrl, 'http://127.0.0.1:2');
    assert.equal(c.upstreams.openai!.baseUrl, 'http://127.0.0.1:3/v1');
  });
});

describe('an azure-openai instance with Entra ID', () => {
  let azure: CompatMock;
  let tb: TestBridge;
  let dev: { key: string };
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    // No Azure credential anywhere in the chain: the SDK's variables are cleared for this suite.
    for (const k of Object.keys(process.env).filter(
      (k) => k.startsWith('AZURE_') || k === 'IDENTITY_ENDPOINT',
    )) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
    azure = await new CompatMock('azure').start();
    const dir = await tempDir();
    const file = await writeProviders(dir, {
      providers: {
        'azure-entra': { type: 'azure-openai', baseUrl: `${azure.url}/openai/v1`, auth: 'entra' },
      },
    });
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
    dev = await tb.addUser('entra@example.com');
  });
  after(async () => {
    await tb?.close();
    await azure?.stop();
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  });

  it('answers 503 naming the instance when no token can be obtained, and sends nothing upstream', async () => {
    const client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/azure-entra/v1`, maxRetries: 0 });
    const err = await client.chat.completions
      .create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    assert.ok(err instanceof APIError);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'provider_not_configured');
    assert.match(err.message, /provider instance "azure-entra"/);
    assert.equal(azure.requests.length, 0);
    const rec = (await tb.interceptions(1, dev.key))[0]!;
    assert.equal(rec.provider, 'azure-entra');
    assert.equal(rec.error?.type, 'provider_not_configured');
  });
});
