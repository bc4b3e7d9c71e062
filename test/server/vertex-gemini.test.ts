import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { ApiError, GoogleGenAI } from '@google/genai';
import { OAuth2Client } from 'google-auth-library';
import { loadConfig } from '../../server/config';
import { mapVertexGeminiError } from '../../server/providers/vertex-gemini/errors';
import { vertexGeminiFamily } from '../../server/providers/vertex-gemini/family';
import { geminiModelOf } from '../../server/providers/vertex-gemini/models';
import { vertexBody, vertexTarget } from '../../server/providers/vertex-gemini/request';
import { routeFor } from '../../server/proxy/provider-paths';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { run } from '../helpers/run';
import { testServiceAccount, VERTEX_PROJECT, VERTEX_REGION, VertexMock } from '../helpers/vertex-mock';

const account = testServiceAccount();
/** Where every request of the instance must land, whatever project and location the client named. */
const UPSTREAM = `/projects/${VERTEX_PROJECT}/locations/${VERTEX_REGION}/publishers/google/models/`;
const TEXT = 'Hello from Gemini on Vertex.';
/** generate-text.json and stream-text.sse: prompt 1310 (1024 cached, 5 tool-use), 41 candidates, 96 thoughts. */
const TEXT_USAGE = { input: 1310 - 1024 + 5, cacheRead: 1024, cacheWrite: 0, output: 41 + 96, reasoning: 96 };

/** A bridge with vertex-gemini instances whose service-account key points its token_uri at the mock. */
async function bridgeWith(mock: VertexMock): Promise<TestBridge> {
  const dir = await tempDir();
  const keyFile = path.join(dir, 'sa.json');
  await fs.writeFile(keyFile, JSON.stringify(account.json(mock.tokenUri)), { mode: 0o600 });
  const quotaFile = path.join(dir, 'sa-quota.json');
  await fs.writeFile(
    quotaFile,
    JSON.stringify({ ...account.json(mock.tokenUri), quota_project_id: 'billing-project' }),
    { mode: 0o600 },
  );
  const entry = { type: 'vertex-gemini', project: VERTEX_PROJECT, region: VERTEX_REGION, baseUrl: mock.url };
  const file = path.join(dir, 'providers.json');
  await fs.writeFile(
    file,
    JSON.stringify({
      providers: {
        vgem: { ...entry, credentialsFile: keyFile },
        'vgem-nokey': { ...entry, credentialsFile: path.join(dir, 'missing.json') },
        'vgem-quota': { ...entry, credentialsFile: quotaFile },
      },
    }),
  );
  return startBridge('http://127.0.0.1:9', {
    AIBRIDGE_PROVIDERS_FILE: file,
    AIBRIDGE_BREAKER_THRESHOLD: '0',
  });
}

/** A fetch that notes each URL the SDK asks for, so a test can say which form it spoke. */
function noting(urls: string[]): typeof fetch {
  return (input, init) => {
    urls.push(String(input instanceof Request ? input.url : input));
    return fetch(input, init);
  };
}

describe('Gemini on Vertex AI (vertex-gemini) as an instance', () => {
  let mock: VertexMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    mock = await new VertexMock(account).start();
    tb = await bridgeWith(mock);
    key = (await tb.addUser('vgem@example.com')).key;
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
  });

  beforeEach(() => {
    mock.scenario = 'text';
  });

  async function latest(before: number) {
    return (await tb.interceptions(before + 1, key))[0]!;
  }
  const count = async () => (await tb.interceptions(0, key)).length;
  /** `@google/genai` in API-key mode (the Gemini API's form), as Gemini CLI and most apps use it. */
  const apiKeyMode = (urls: string[] = []) =>
    new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${tb.url}/vgem`, fetch: noting(urls) } });
  /** `@google/genai` in Vertex mode, naming a project and location of its own (ignored by the bridge). */
  const vertexMode = (urls: string[] = []) =>
    new GoogleGenAI({
      vertexai: true,
      project: 'client-project',
      location: 'europe-west4',
      apiKey: key,
      httpOptions: { baseUrl: `${tb.url}/vgem`, fetch: noting(urls) },
    });

  /** The upstream request checks every test makes: the instance's token and place, no bridge key. */
  function upstream(pathAfterModels: string) {
    const seen = mock.seen.at(-1)!;
    assert.equal(
      seen.path,
      pathAfterModels.startsWith('/') ? pathAfterModels : `/v1beta1${UPSTREAM}${pathAfterModels}`,
    );
    assert.equal(seen.tokenValid, true, 'a bearer token the token endpoint issued');
    assert.equal(seen.token, mock.grants.at(-1)?.token);
    assert.equal(seen.headers['x-goog-api-key'], undefined, 'the bridge key never goes upstream');
    assert.ok(!seen.path.includes('key='), 'no key in the upstream query');
    assert.ok(!JSON.stringify(seen.headers).includes(key), 'the bridge key in no upstream header');
    return seen;
  }

  it('API-key mode: generateContent goes to the instance’s project and region, metered and priced exactly', async () => {
    const before = await count();
    const urls: string[] = [];
    const res = await apiKeyMode(urls).models.generateContent({
      model: 'gemini-2.5-pro',
      contents: 'Say hello',
    });
    assert.equal(res.text, TEXT);
    assert.equal(res.usageMetadata?.promptTokenCount, 1310);
    assert.deepEqual(urls, [`${tb.url}/vgem/v1beta/models/gemini-2.5-pro:generateContent`]);
    const seen = upstream('gemini-2.5-pro:generateContent');
    assert.deepEqual(seen.body.contents, [{ role: 'user', parts: [{ text: 'Say hello' }] }]);
    const rec = await latest(before);
    assert.equal(rec.provider, 'vgem');
    assert.equal(rec.api, 'generateContent');
    assert.equal(rec.model, 'gemini-2.5-pro');
    assert.equal(rec.client, 'google-sdk-js');
    assert.equal(rec.prompt, 'Say hello');
    assert.equal(rec.streamed, false);
    assert.equal(rec.status, 'ok');
    assert.deepEqual(rec.usage, TEXT_USAGE);
    assert.equal(rec.priceKnown, true);
    // gemini-2.5-pro below 200k prompt tokens: $1.25 input, $0.125 cached, $10 output per million.
    const want = (291 * 1.25 + 1024 * 0.125 + 137 * 10) / 1e6;
    assert.ok(Math.abs(rec.costUsd! - want) < 1e-12, String(rec.costUsd));
  });

  it('API-key mode: streamGenerateContent (SSE) relayed and metered; a -001 version priced as its model', async () => {
    const before = await count();
    const stream = await apiKeyMode().models.generateContentStream({
      model: 'gemini-2.0-flash-001',
      contents: 'Say hello',
    });
    let text = '';
    for await (const chunk of stream) text += chunk.text ?? '';
    assert.equal(text, TEXT);
    upstream('gemini-2.0-flash-001:streamGenerateContent?alt=sse');
    const rec = await latest(before);
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.model, 'gemini-2.0-flash');
    assert.deepEqual(rec.usage, TEXT_USAGE);
    // gemini-2.0-flash: $0.10 input, $0.025 cached, $0.40 output per million.
    const want = (291 * 0.1 + 1024 * 0.025 + 137 * 0.4) / 1e6;
    assert.ok(Math.abs(rec.costUsd! - want) < 1e-12, String(rec.costUsd));
  });

  it('Vertex mode: the client’s project and location are replaced, a function call audited as a tool call', async () => {
    mock.scenario = 'tool';
    const before = await count();
    const urls: string[] = [];
    const res = await vertexMode(urls).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'Weather in Rome?',
      config: {
        tools: [
          { functionDeclarations: [{ name: 'get_weather', parametersJsonSchema: { type: 'object' } }] },
        ],
      },
    });
    assert.deepEqual(res.functionCalls?.[0]?.args, { city: 'Rome' });
    assert.deepEqual(urls, [
      `${tb.url}/vgem/v1beta1/projects/client-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent`,
    ]);
    upstream('gemini-2.5-flash:generateContent');
    const rec = await latest(before);
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.deepEqual(
      rec.toolCalls.map((t) => [t.name, t.input]),
      [['get_weather', { city: 'Rome' }]],
    );
    assert.deepEqual(rec.usage, { input: 58, cacheRead: 0, cacheWrite: 0, output: 15 + 64, reasoning: 64 });
    assert.equal(rec.priceKnown, true);
  });

  it('Vertex mode with a bearer (an auth client carrying the bridge key): a streamed function call', async () => {
    mock.scenario = 'tool';
    const before = await count();
    // google-auth-library's OAuth2Client with the bridge key as its access token: the SDK sends it
    // as `Authorization: Bearer`, with no Google credentials on the client's machine.
    const authClient = new OAuth2Client();
    authClient.setCredentials({ access_token: key });
    const urls: string[] = [];
    const ai = new GoogleGenAI({
      vertexai: true,
      project: 'client-project',
      location: 'us-central1',
      googleAuthOptions: { authClient },
      httpOptions: { baseUrl: `${tb.url}/vgem`, fetch: noting(urls) },
    });
    const stream = await ai.models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: 'Weather in Rome?',
    });
    const calls: unknown[] = [];
    for await (const chunk of stream) calls.push(...(chunk.functionCalls ?? []).map((c) => c.args));
    assert.deepEqual(calls, [{ city: 'Rome' }]);
    assert.match(
      urls[0] ?? '',
      /\/vgem\/v1beta1\/projects\/client-project\/locations\/us-central1\/publishers\//,
    );
    const seen = upstream('gemini-2.5-flash:streamGenerateContent?alt=sse');
    assert.notEqual(seen.headers.authorization, `Bearer ${key}`);
    const rec = await latest(before);
    assert.equal(rec.streamed, true);
    assert.deepEqual(
      rec.toolCalls.map((t) => t.name),
      ['get_weather'],
    );
    assert.deepEqual(rec.usage, {
      input: 412 - 256,
      cacheRead: 256,
      cacheWrite: 0,
      output: 18 + 64,
      reasoning: 64,
    });
  });

  it('Vertex express mode (an API key, no project): served at /v1beta1/publishers/google/models', async () => {
    const before = await count();
    const urls: string[] = [];
    const ai = new GoogleGenAI({
      vertexai: true,
      apiKey: key,
      httpOptions: { baseUrl: `${tb.url}/vgem`, fetch: noting(urls) },
    });
    const res = await ai.models.generateContent({ model: 'gemini-2.5-pro', contents: 'hi' });
    assert.equal(res.text, TEXT);
    assert.deepEqual(urls, [
      `${tb.url}/vgem/v1beta1/publishers/google/models/gemini-2.5-pro:generateContent`,
    ]);
    upstream('gemini-2.5-pro:generateContent');
    assert.deepEqual((await latest(before)).usage, TEXT_USAGE);
  });

  it('countTokens passes through unmetered in both forms; a wrapped generateContentRequest is unwrapped', async () => {
    const before = await count();
    const a = await apiKeyMode().models.countTokens({ model: 'gemini-2.5-pro', contents: 'count me' });
    assert.equal(a.totalTokens, 31);
    upstream('gemini-2.5-pro:countTokens');
    const b = await vertexMode().models.countTokens({ model: 'gemini-2.5-pro', contents: 'count me' });
    assert.equal(b.totalTokens, 31);
    upstream('gemini-2.5-pro:countTokens');
    const res = await fetch(`${tb.url}/vgem/v1beta/models/gemini-2.5-pro:countTokens`, {
      method: 'POST',
      headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({
        generateContentRequest: { model: 'models/gemini-2.5-pro', contents: [{ parts: [{ text: 'x' }] }] },
      }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(upstream('gemini-2.5-pro:countTokens').body, {
      contents: [{ role: 'user', parts: [{ text: 'x' }] }],
    });
    assert.equal(await count(), before, 'nothing metered');
  });

  it('adds the role Vertex requires to contents that omit it; the key may come as ?key=', async () => {
    const before = await count();
    const res = await fetch(`${tb.url}/vgem/v1/models/gemini-2.5-pro:generateContent?key=${key}`, {
      method: 'POST',
      // A quota project of the client's own would bill another project with the instance's token.
      headers: { 'content-type': 'application/json', 'x-goog-user-project': 'someone-elses-project' },
      body: JSON.stringify({
        contents: [
          { parts: [{ text: 'first' }] },
          { role: 'model', parts: [{ text: 'ok' }] },
          { parts: [{ text: 'again' }] },
        ],
      }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    // The Gemini API's v1 goes to Vertex's v1.
    const seen = upstream(`/v1${UPSTREAM}gemini-2.5-pro:generateContent`);
    assert.deepEqual(
      (seen.body.contents as { role: string }[]).map((c) => c.role),
      ['user', 'model', 'user'],
    );
    assert.equal(seen.headers['x-goog-user-project'], undefined);
    const rec = await latest(before);
    assert.equal(rec.prompt, 'again');
  });

  it('refuses streamFunctionCallArguments (calls in pieces no policy or record could read whole) with 400, upstream untouched', async () => {
    const sent = mock.seen.length;
    for (const toolConfig of [
      { functionCallingConfig: { streamFunctionCallArguments: true } },
      { function_calling_config: { stream_function_call_arguments: true } },
      // Both spellings at once: Google reads either name, so an empty one must not hide the other.
      { functionCallingConfig: {}, function_calling_config: { streamFunctionCallArguments: true } },
    ]) {
      const res = await fetch(
        `${tb.url}/vgem/v1beta1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-goog-api-key': key },
          body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }], toolConfig }),
        },
      );
      assert.equal(res.status, 400, JSON.stringify(toolConfig));
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT');
      assert.match(err.error.message, /streamFunctionCallArguments/);
    }
    const both = await fetch(
      `${tb.url}/vgem/v1beta1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': key },
        body: JSON.stringify({
          contents: [{ role: 'user', parts: [{ text: 'hi' }] }],
          toolConfig: {},
          tool_config: { functionCallingConfig: { streamFunctionCallArguments: true } },
        }),
      },
    );
    assert.equal(both.status, 400, 'toolConfig beside tool_config');
    await both.arrayBuffer();
    assert.equal(mock.seen.length, sent, 'nothing sent upstream');
  });

  it('the credential’s quota project goes upstream in place of the client’s', async () => {
    const res = await fetch(`${tb.url}/vgem-quota/v1beta/models/gemini-2.5-pro:generateContent`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': key,
        'content-type': 'application/json',
        'x-goog-user-project': 'someone-elses-project',
      },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(res.status, 200);
    assert.equal(
      upstream('gemini-2.5-pro:generateContent').headers['x-goog-user-project'],
      'billing-project',
    );
  });

  it('a member cannot buy Priority PayGo (billed above the standard prices the bridge charges): the header is not forwarded', async () => {
    const res = await fetch(`${tb.url}/vgem/v1beta/models/gemini-2.5-pro:generateContent`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': key,
        'content-type': 'application/json',
        'X-Vertex-AI-LLM-Shared-Request-Type': 'priority',
      },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const seen = mock.seen.at(-1)!;
    assert.match(seen.path, /gemini-2\.5-pro:generateContent$/);
    assert.equal(seen.headers['x-vertex-ai-llm-shared-request-type'], undefined);
  });

  it('RESOURCE_EXHAUSTED reaches the client as a 429 in Google’s shape, retry-after from RetryInfo', async () => {
    mock.scenario = 'quota';
    const before = await count();
    await assert.rejects(
      apiKeyMode().models.generateContent({ model: 'gemini-2.5-pro', contents: 'hi' }),
      (err: unknown) => {
        assert.ok(err instanceof ApiError, String(err));
        assert.equal(err.status, 429);
        assert.match(err.message, /RESOURCE_EXHAUSTED/);
        return true;
      },
    );
    const res = await fetch(
      `${tb.url}/vgem/v1beta1/projects/p/locations/l/publishers/google/models/gemini-2.5-pro:generateContent`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
      },
    );
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
    const body = (await res.json()) as { error: { code: number; status: string; message: string } };
    assert.equal(body.error.code, 429);
    assert.equal(body.error.status, 'RESOURCE_EXHAUSTED');
    assert.match(body.error.message, /^Resource exhausted/);
    const rec = await latest(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.httpStatus, 429);
    assert.equal(rec.error?.type, 'RESOURCE_EXHAUSTED');
  });

  it('a credential that cannot be obtained is a 503 in Google’s shape naming the instance; /readyz says so', async () => {
    const sent = mock.seen.length;
    const ai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${tb.url}/vgem-nokey` } });
    await assert.rejects(
      ai.models.generateContent({ model: 'gemini-2.5-pro', contents: 'hi' }),
      (err: unknown) => {
        assert.ok(err instanceof ApiError, String(err));
        assert.equal(err.status, 503);
        const body = JSON.parse(err.message) as { error: { status: string; message: string } };
        assert.equal(body.error.status, 'UNAVAILABLE');
        assert.match(body.error.message, /"vgem-nokey"/);
        assert.match(body.error.message, /missing\.json cannot be read \(ENOENT\)/);
        assert.match(body.error.message, /\(provider_not_configured\)$/);
        return true;
      },
    );
    assert.equal(mock.seen.length, sent, 'nothing sent upstream');
    const ready = await tb.api<{
      status: string;
      upstreams: Record<string, { credential?: { ok: boolean | null; error?: string } }>;
    }>('GET', '/readyz', tb.adminKey);
    assert.equal(ready.body.status, 'degraded');
    assert.deepEqual(ready.body.upstreams.vgem?.credential, { ok: true });
    assert.equal(ready.body.upstreams['vgem-nokey']?.credential?.ok, false);
    assert.match(ready.body.upstreams['vgem-nokey']?.credential?.error ?? '', /missing\.json cannot be read/);
  });

  it('refuses paths it does not serve: another publisher, batch, the model list', async () => {
    const sent = mock.seen.length;
    for (const p of [
      '/v1beta1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4-5:rawPredict',
      '/v1beta1/projects/p/locations/l/endpoints/123:generateContent',
      '/v1beta/models/gemini-2.5-pro:batchGenerateContent',
    ]) {
      const res = await fetch(`${tb.url}/vgem${p}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body: '{"contents":[]}',
      });
      assert.equal(res.status, 404, p);
      const body = (await res.json()) as { error: { status: string } };
      assert.equal(body.error.status, 'NOT_FOUND');
    }
    assert.equal(mock.seen.length, sent);
  });
});

describe('a route from the Gemini API to Gemini on Vertex', () => {
  let gemini: GeminiMock;
  let mock: VertexMock;
  let tb: TestBridge;

  before(async () => {
    gemini = await startGeminiMock();
    mock = await new VertexMock(account).start();
    const dir = await tempDir();
    const keyFile = path.join(dir, 'sa.json');
    await fs.writeFile(keyFile, JSON.stringify(account.json(mock.tokenUri)), { mode: 0o600 });
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          gem: { type: 'gemini', baseUrl: gemini.origin, apiKey: GEMINI_UPSTREAM_KEY },
          vgem: {
            type: 'vertex-gemini',
            project: VERTEX_PROJECT,
            region: VERTEX_REGION,
            baseUrl: mock.url,
            credentialsFile: keyFile,
          },
        },
        // The gemini mock answers a `*-overloaded` model with 503 UNAVAILABLE.
        routes: { 'gemini-2.5-pro-overloaded': ['gem', 'vgem:gemini-2.5-pro'] },
      }),
    );
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
    await gemini?.stop();
  });

  it('fails over from an overloaded Gemini API to Vertex, recorded on the instance that answered', async () => {
    const key = (await tb.addUser('route@example.com')).key;
    const ai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${tb.url}/gem` } });
    const res = await ai.models.generateContent({ model: 'gemini-2.5-pro-overloaded', contents: 'hi' });
    assert.equal(res.text, TEXT);
    assert.equal(gemini.seen.at(-1)?.url, '/v1beta/models/gemini-2.5-pro-overloaded:generateContent');
    const seen = mock.seen.at(-1)!;
    assert.equal(seen.path, `/v1beta1${UPSTREAM}gemini-2.5-pro:generateContent`);
    assert.equal(seen.tokenValid, true);
    assert.equal(seen.headers['x-goog-api-key'], undefined, 'neither the bridge key nor the Gemini key');
    const [rec] = await tb.interceptions(1, key);
    assert.equal(rec?.provider, 'vgem');
    assert.equal(rec?.model, 'gemini-2.5-pro');
    assert.deepEqual(rec?.usage, TEXT_USAGE);
  });
});

describe('vertex-gemini, unit', () => {
  const at = { project: 'my-project', region: 'us-central1' };

  it('validates the providers-file entry, naming the field', async () => {
    const dir = await tempDir();
    const ok = { type: 'vertex-gemini', project: 'my-project', region: 'us-central1' };
    const cases: [unknown, RegExp][] = [
      [
        { type: 'vertex-gemini', region: 'us-central1' },
        /providers\.v\.project: expected a Google Cloud project id/,
      ],
      [{ ...ok, region: 'moon' }, /providers\.v\.region: expected a Vertex AI region/],
      [{ ...ok, apiKey: 'k' }, /providers\.v\.apiKey: a vertex-gemini instance uses Google OAuth2/],
      [{ ...ok, credentialsFile: '' }, /providers\.v\.credentialsFile: expected the path/],
      [{ ...ok, models: {} }, /providers\.v\.models: unknown field/],
      [{ ...ok, keys: [{ name: 'a', key: 'k' }] }, /providers\.v\.keys/],
    ];
    for (const [entry, re] of cases) {
      const file = path.join(dir, `p-${Math.random().toString(36).slice(2)}.json`);
      await fs.writeFile(file, JSON.stringify({ providers: { v: entry } }));
      assert.throws(() => loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file }), re);
    }
    const good = path.join(dir, 'good.json');
    await fs.writeFile(good, JSON.stringify({ providers: { v: { ...ok, region: 'global' } } }));
    assert.doesNotThrow(() => loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: good }));
  });

  it('sends every form to the instance’s project and region, beta versions to v1beta1', () => {
    const base = '/projects/my-project/locations/us-central1/publishers/google/models';
    assert.deepEqual(vertexTarget('/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse', at), {
      path: `/v1beta1${base}/gemini-2.5-pro:streamGenerateContent?alt=sse`,
      method: 'streamGenerateContent',
    });
    assert.equal(
      vertexTarget('/v1/models/gemini-2.5-pro:generateContent', at)?.path,
      `/v1${base}/gemini-2.5-pro:generateContent`,
    );
    assert.equal(
      vertexTarget('/v1/projects/other/locations/asia-east1/publishers/google/models/m:countTokens', at)
        ?.path,
      `/v1${base}/m:countTokens`,
    );
    assert.equal(
      vertexTarget('/v1beta1/publishers/google/models/m:generateContent', at)?.path,
      `/v1beta1${base}/m:generateContent`,
    );
    assert.equal(vertexTarget('/v1beta/models/m:batchGenerateContent', at), undefined);
    assert.equal(vertexTarget('/v1beta/models', at), undefined);
  });

  it('routes the three client forms, metered and passed through, and refuses the rest', () => {
    const adapter = vertexGeminiFamily.create({
      name: 'vg',
      baseUrl: 'https://{region}-aiplatform.googleapis.com',
      apiKey: undefined,
      options: { project: 'my-project', region: 'global' },
    });
    const kind = (p: string) => routeFor(adapter, 'POST', p).kind;
    assert.equal(kind('/v1beta/models/m:generateContent'), 'metered');
    assert.equal(kind('/v1/models/m:streamGenerateContent'), 'metered');
    assert.equal(
      kind('/v1beta1/projects/p/locations/l/publishers/google/models/m:streamGenerateContent'),
      'metered',
    );
    assert.equal(kind('/v1/projects/p/locations/l/publishers/google/models/m:generateContent'), 'metered');
    assert.equal(kind('/v1beta1/publishers/google/models/m:generateContent'), 'metered');
    assert.equal(
      kind('/v1beta1/projects/p/locations/l/publishers/google/models/m:countTokens'),
      'passthrough',
    );
    assert.equal(kind('/v1beta/models/m:countTokens'), 'passthrough');
    assert.equal(kind('/v1beta1/projects/p/locations/l/publishers/meta/models/m:generateContent'), 'refused');
    assert.equal(
      kind('/v1beta/projects/p/locations/l/publishers/google/models/m:generateContent'),
      'refused',
    );
    assert.equal(
      adapter.upstreamUrl('/v1beta/models/m:generateContent'),
      'https://aiplatform.googleapis.com/v1beta1/projects/my-project/locations/global/publishers/google/models/m:generateContent',
    );
  });

  it('adds missing roles and unwraps countTokens’ generateContentRequest, else leaves the body alone', () => {
    const body = { contents: [{ role: 'user', parts: [{ text: 'a' }] }] };
    assert.equal(vertexBody(body, 'generateContent'), undefined);
    assert.deepEqual(vertexBody({ contents: [{ parts: [] }], generationConfig: {} }, 'generateContent'), {
      contents: [{ role: 'user', parts: [] }],
      generationConfig: {},
    });
    assert.deepEqual(
      vertexBody(
        {
          generateContentRequest: {
            model: 'models/m',
            contents: [{ parts: [] }],
            systemInstruction: { parts: [] },
          },
        },
        'countTokens',
      ),
      { contents: [{ role: 'user', parts: [] }], systemInstruction: { parts: [] } },
    );
  });

  it('prices Vertex version suffixes as their model', () => {
    assert.equal(geminiModelOf('gemini-2.0-flash-001'), 'gemini-2.0-flash');
    assert.equal(geminiModelOf('gemini-2.5-pro@001'), 'gemini-2.5-pro');
    assert.equal(geminiModelOf('gemini-2.5-pro%40001'), 'gemini-2.5-pro');
    assert.equal(geminiModelOf('gemini-2.5-flash'), 'gemini-2.5-flash');
    assert.equal(geminiModelOf('gemini-3-pro-preview'), 'gemini-3-pro-preview');
  });

  it('keeps Google’s error shape, unwrapping a streaming endpoint’s array, shaping what is not Google’s', () => {
    const raw = Buffer.from('{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}');
    const denied = mapVertexGeminiError(403, raw);
    assert.equal(denied.body, undefined, 'as sent');
    assert.equal(denied.retryAfter, undefined);
    const quota = mapVertexGeminiError(
      429,
      Buffer.from('{"error":{"code":429,"message":"q","status":"RESOURCE_EXHAUSTED"}}'),
      '30',
    );
    assert.equal(quota.retryAfter, '30');
    const array = mapVertexGeminiError(
      404,
      Buffer.from('[{"error":{"code":404,"message":"nf","status":"NOT_FOUND"}}]'),
    );
    assert.deepEqual(array.body, {
      error: { code: 404, message: 'nf', status: 'NOT_FOUND' },
    });
    const html = mapVertexGeminiError(502, Buffer.from('<html>Bad Gateway</html>'));
    assert.deepEqual(html.body, {
      error: { code: 502, message: '<html>Bad Gateway</html>', status: 'INTERNAL' },
    });
  });
});

/** The real Gemini CLI's entry point, run with this node so the test does not depend on `PATH`. */
const GEMINI_CLI = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@google/gemini-cli/package.json')),
  'bundle',
  'gemini.js',
);

describe('the real Gemini CLI through a vertex-gemini instance', function () {
  this.timeout(120_000);
  let mock: VertexMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new VertexMock(account).start();
    tb = await bridgeWith(mock);
  });

  after(async () => {
    await tb?.close();
    await mock?.close();
  });

  it('gemini -p with GOOGLE_GEMINI_BASE_URL=<bridge>/vgem: answered by Vertex, metered as a stream', async () => {
    const dev = await tb.addUser('gemini-cli-vertex@example.com');
    const home = await tempDir('aibridge-gemini-home-');
    // The API-key auth type, so the CLI sends the bridge key to the base URL (docs/providers.md).
    await fs.mkdir(path.join(home, '.gemini'), { recursive: true });
    await fs.writeFile(
      path.join(home, '.gemini', 'settings.json'),
      JSON.stringify({ security: { auth: { selectedType: 'gemini-api-key' } } }),
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      GOOGLE_GEMINI_BASE_URL: `${tb.url}/vgem`,
      GEMINI_API_KEY: dev.key,
      GEMINI_CLI_TRUST_WORKSPACE: 'true',
      CI: '1',
      NO_COLOR: '1',
    };
    const res = await run(
      process.execPath,
      [GEMINI_CLI, '-p', 'Say hello', '-m', 'gemini-2.5-pro'],
      env,
      home,
    );
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), TEXT);
    assert.equal(mock.seen.length, 1, mock.seen.map((s) => s.path).join(', '));
    const seen = mock.seen[0]!;
    assert.equal(seen.path, `/v1beta1${UPSTREAM}gemini-2.5-pro:streamGenerateContent?alt=sse`);
    assert.equal(seen.tokenValid, true);
    assert.equal(seen.headers['x-goog-api-key'], undefined);
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.client, 'gemini-cli');
    assert.equal(rec.provider, 'vgem');
    assert.equal(rec.model, 'gemini-2.5-pro');
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.prompt, 'Say hello');
    assert.deepEqual(rec.usage, TEXT_USAGE);
  });

  it('gemini -p in Vertex mode (GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_VERTEX_BASE_URL=<bridge>/vgem)', async () => {
    const dev = await tb.addUser('gemini-cli-vertex-mode@example.com');
    const home = await tempDir('aibridge-gemini-home-');
    await fs.mkdir(path.join(home, '.gemini'), { recursive: true });
    await fs.writeFile(
      path.join(home, '.gemini', 'settings.json'),
      JSON.stringify({ security: { auth: { selectedType: 'vertex-ai' } } }),
    );
    const sent = mock.seen.length;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      GOOGLE_GENAI_USE_VERTEXAI: 'true',
      // Vertex express mode: the bridge key as the API key, no project of the client's own.
      GOOGLE_API_KEY: dev.key,
      GOOGLE_VERTEX_BASE_URL: `${tb.url}/vgem`,
      GEMINI_CLI_TRUST_WORKSPACE: 'true',
      CI: '1',
      NO_COLOR: '1',
    };
    const res = await run(
      process.execPath,
      [GEMINI_CLI, '-p', 'Say hello', '-m', 'gemini-2.5-pro'],
      env,
      home,
    );
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), TEXT);
    const mine = mock.seen.slice(sent);
    assert.equal(mine.length, 1, mine.map((s) => s.path).join(', '));
    assert.equal(mine[0]!.path, `/v1beta1${UPSTREAM}gemini-2.5-pro:streamGenerateContent?alt=sse`);
    assert.equal(mine[0]!.tokenValid, true);
    const [rec] = await tb.interceptions(1, dev.key);
    assert.equal(rec?.client, 'gemini-cli');
    assert.deepEqual(rec?.usage, TEXT_USAGE);
  });
});
