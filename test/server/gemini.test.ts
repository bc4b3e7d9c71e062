import assert from 'node:assert/strict';
import http from 'node:http';
import { GoogleGenAI } from '@google/genai';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';

/** The mock's final usageMetadata, as the bridge must record it. */
const USAGE = { input: 1200 - 1000 + 7, cacheRead: 1000, cacheWrite: 0, output: 35 + 12, reasoning: 12 };

describe('Gemini API (native) through the bridge', () => {
  let mock: GeminiMock;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    mock = await startGeminiMock();
    tb = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_GEMINI_BASE_URL: mock.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
      AIBRIDGE_BREAKER_THRESHOLD: '0',
    });
    key = (await tb.addUser('gem@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  const sdk = () => new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: `${tb.url}/gemini` } });
  async function next(n: number) {
    return (await tb.interceptions(n, key))[0]!;
  }

  it('meters generateContent from the SDK: usage exact, priced as the model, the key swapped', async () => {
    const before = (await tb.interceptions(0, key)).length;
    const res = await sdk().models.generateContent({
      model: 'gemini-2.5-pro',
      contents: 'Say hello in French',
    });
    assert.equal(res.text, 'Bonjour');
    assert.equal(res.usageMetadata?.promptTokenCount, 1200);
    const rec = await next(before + 1);
    assert.equal(rec.provider, 'gemini');
    assert.equal(rec.api, 'generateContent');
    assert.equal(rec.model, 'gemini-2.5-pro');
    assert.equal(rec.client, 'google-sdk-js');
    assert.equal(rec.prompt, 'Say hello in French');
    assert.deepEqual(rec.usage, USAGE);
    assert.equal(rec.status, 'ok');
    // gemini-2.5-pro below 200k prompt tokens: $1.25 input, $0.125 cached, $10 output per million.
    assert.ok(
      Math.abs(rec.costUsd! - (207 * 1.25 + 1000 * 0.125 + 47 * 10) / 1e6) < 1e-12,
      String(rec.costUsd),
    );
    const up = mock.seen.at(-1)!;
    assert.equal(up.url, '/v1beta/models/gemini-2.5-pro:generateContent');
    assert.equal(up.headers['x-goog-api-key'], GEMINI_UPSTREAM_KEY);
    assert.equal(up.headers.authorization, undefined);
  });

  it('meters Grounding with Google Search: each query counted, billed per query (Gemini 3) or per grounded prompt (earlier), streamed or whole', async () => {
    const cost = async (model: string, grounded: boolean, stream: boolean) => {
      const before = (await tb.interceptions(0, key)).length;
      const ask = {
        model,
        contents: 'Weather in Paris?',
        config: grounded ? { tools: [{ googleSearch: {} }] } : {},
      };
      if (stream) for await (const _ of await sdk().models.generateContentStream(ask));
      else await sdk().models.generateContent(ask);
      return next(before + 1);
    };
    for (const stream of [false, true]) {
      const plain = await cost('gemini-2.5-flash', false, stream);
      const grounded = await cost('gemini-2.5-flash', true, stream);
      assert.equal(
        grounded.usage.webSearches,
        2,
        'the two queries, once each however many chunks repeat them',
      );
      assert.equal(plain.usage.webSearches, undefined);
      // Gemini 2.5: $35 per 1,000 grounded prompts, whatever the number of queries.
      assert.ok(
        Math.abs(grounded.costUsd! - plain.costUsd! - 0.035) < 1e-9,
        `${grounded.costUsd} vs ${plain.costUsd}`,
      );
      const plain3 = await cost('gemini-3-pro-preview', false, stream);
      const grounded3 = await cost('gemini-3-pro-preview', true, stream);
      // Gemini 3: $14 per 1,000 queries.
      assert.ok(plain3.costUsd !== null, 'the model is priced');
      assert.ok(
        Math.abs(grounded3.costUsd! - plain3.costUsd! - 0.028) < 1e-9,
        `${grounded3.costUsd} vs ${plain3.costUsd}`,
      );
    }
    // An admin's price for the model prices its tokens, not Google's searches: those still count.
    const put = await tb.api('PUT', '/api/v1/prices/gemini-3-pro-preview', tb.adminKey, {
      input_mtok: 2,
      output_mtok: 12,
    });
    assert.ok(put.status < 300, JSON.stringify(put.body));
    try {
      const plain = await cost('gemini-3-pro-preview', false, false);
      const grounded = await cost('gemini-3-pro-preview', true, false);
      assert.ok(
        Math.abs(grounded.costUsd! - plain.costUsd! - 0.028) < 1e-9,
        `${grounded.costUsd} vs ${plain.costUsd}`,
      );
    } finally {
      await tb.api('DELETE', '/api/v1/prices/gemini-3-pro-preview', tb.adminKey);
    }
  });

  it('given the bridge URL alone, or /gemini/v1beta, the SDK is told the base URL to give, in Google’s shape', async () => {
    for (const base of [tb.url, `${tb.url}/gemini/v1beta`]) {
      const wrong = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: base } });
      const err = await wrong.models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' }).then(
        () => assert.fail('served'),
        (e: unknown) => e as { status?: number; message?: string },
      );
      assert.equal(err.status, 400, base);
      // Google's shape: the SDK reads the message (a bridge-shaped body was "[object Object]").
      assert.match(err.message ?? '', /"status":"INVALID_ARGUMENT"/);
      assert.match(err.message ?? '', /give the client the base URL <bridge URL>\/gemini, not/);
    }
  });

  it('prices a prompt past 200k tokens at Gemini’s long-context tier', async () => {
    const before = (await tb.interceptions(0, key)).length;
    await sdk().models.generateContent({ model: 'gemini-2.5-pro', contents: 'LONG document' });
    const rec = await next(before + 1);
    assert.deepEqual(rec.usage, { ...USAGE, input: 250_000 - 1000 + 7 });
    // Above 200k: $2.50 input, $0.25 cached, $15 output per million.
    const want = ((250_000 - 1000 + 7) * 2.5 + 1000 * 0.25 + 47 * 15) / 1e6;
    assert.ok(Math.abs(rec.costUsd! - want) < 1e-9, String(rec.costUsd));
  });

  it('prices the images an image model answers with at the image price, streaming and not', async () => {
    const before = (await tb.interceptions(0, key)).length;
    const res = await sdk().models.generateContent({ model: 'gemini-2.5-flash-image', contents: 'A cat' });
    assert.equal(res.candidates?.[0]?.content?.parts?.[0]?.inlineData?.mimeType, 'image/png');
    let chunks = 0;
    for await (const _ of await sdk().models.generateContentStream({
      model: 'gemini-2.5-flash-image',
      contents: 'A cat',
    }))
      chunks++;
    assert.equal(chunks, 2);
    for (const rec of (await tb.interceptions(before + 2, key)).slice(0, 2)) {
      assert.deepEqual(rec.usage, {
        input: 9,
        cacheRead: 0,
        cacheWrite: 0,
        output: 1290,
        reasoning: 0,
        outputImage: 1290,
      });
      // $0.30 input and $30 per million image tokens out (an image is $0.039), not text's $2.50.
      assert.ok(Math.abs(rec.costUsd! - (9 * 0.3 + 1290 * 30) / 1e6) < 1e-12, String(rec.costUsd));
    }
  });

  it('meters streamGenerateContent (SSE): usage from the last chunk, the stream relayed', async () => {
    const before = (await tb.interceptions(0, key)).length;
    const stream = await sdk().models.generateContentStream({ model: 'gemini-2.5-flash', contents: 'hi' });
    let text = '';
    for await (const chunk of stream) text += chunk.text ?? '';
    assert.equal(text, 'BonBonjour');
    const rec = await next(before + 1);
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.deepEqual(rec.usage, USAGE);
    assert.equal(mock.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
  });

  it('refuses streamGenerateContent without alt=sse (a JSON array, readable only whole) before it goes upstream', async () => {
    const seen = mock.seen.length;
    for (const q of ['', '?alt=json', '?alt=sse&%24alt=json']) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-tools:streamGenerateContent${q}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
      });
      assert.equal(res.status, 400, q);
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT', q);
      assert.match(err.error.message, /send `alt=sse`/, q);
    }
    assert.equal(mock.seen.length, seen, 'nothing reached the provider');
  });

  it('records function calls as tool calls, streaming and not', async () => {
    const config = {
      tools: [{ functionDeclarations: [{ name: 'get_weather', parametersJsonSchema: { type: 'object' } }] }],
    };
    const before = (await tb.interceptions(0, key)).length;
    const res = await sdk().models.generateContent({
      model: 'gemini-tools',
      contents: 'Weather in Paris?',
      config,
    });
    assert.deepEqual(res.functionCalls?.[0]?.args, { city: 'Paris' });
    const rec = await next(before + 1);
    assert.deepEqual(
      rec.toolCalls.map((t) => [t.name, t.input]),
      [['get_weather', { city: 'Paris' }]],
    );
    const stream = await sdk().models.generateContentStream({
      model: 'gemini-tools',
      contents: 'again',
      config,
    });
    for await (const _ of stream) {
      // drain
    }
    const streamed = await next(before + 2);
    assert.deepEqual(
      streamed.toolCalls.map((t) => t.name),
      ['get_weather'],
    );
  });

  it('records the function results the client sends back', async () => {
    const before = (await tb.interceptions(0, key)).length;
    await sdk().models.generateContent({
      model: 'gemini-2.5-flash',
      contents: [
        { role: 'user', parts: [{ text: 'Weather in Paris?' }] },
        { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
        {
          role: 'user',
          parts: [{ functionResponse: { name: 'get_weather', response: { output: 'sunny' } } }],
        },
      ],
    });
    const rec = await next(before + 1);
    // Neither the call nor its result has an id: the result is paired with the call in the model's
    // turn by its name, and named by the id the call was recorded by (its tool's name and a hash).
    assert.deepEqual(
      rec.toolResults?.map((r) => r.isError),
      [false],
    );
    assert.match(rec.toolResults?.[0]?.callId ?? '', /^get_weather#[0-9a-f]{16}$/);
  });

  it('links each function result to its call: by the id the client gave it, else by name in order', async () => {
    const config = {
      tools: [
        { functionDeclarations: [{ name: 'list_directory', parametersJsonSchema: { type: 'object' } }] },
      ],
    };
    const user = { role: 'user', parts: [{ text: 'List LIST:src,no-such-dir' }] };
    const before = (await tb.interceptions(0, key)).length;
    // Two calls of one tool, without ids (generateContent gives none), the first with the answer's
    // thought signature.
    const first = await sdk().models.generateContent({ model: 'gemini-2.5-flash', contents: [user], config });
    const turn = first.candidates?.[0]?.content;
    assert.deepEqual(
      turn?.parts?.map((p) => [p.functionCall?.id, p.functionCall?.args, typeof p.thoughtSignature]),
      [
        [undefined, { dir_path: 'src' }, 'string'],
        [undefined, { dir_path: 'no-such-dir' }, 'undefined'],
      ],
    );
    // As the Gemini CLI does: ids of its own on the calls in its history and on their results, the
    // results sent in another order than the calls.
    const named = turn!.parts!.map((p, i) => ({
      ...p,
      functionCall: { ...p.functionCall, id: `list_directory_1796398823588_${i}` },
    }));
    await sdk().models.generateContent({
      model: 'gemini-2.5-flash',
      config,
      contents: [
        user,
        { role: 'model', parts: named },
        {
          role: 'user',
          parts: [
            {
              functionResponse: {
                id: 'list_directory_1796398823588_1',
                name: 'list_directory',
                response: { error: 'ENOENT' },
              },
            },
            {
              functionResponse: {
                id: 'list_directory_1796398823588_0',
                name: 'list_directory',
                response: { output: 'a.ts' },
              },
            },
          ],
        },
      ],
    });
    // A later answer with calls of the same tool, their results sent without any id (the SDK's own
    // history): paired by name, in order, and the earlier calls keep their own results.
    const stream = await sdk().models.generateContentStream({
      model: 'gemini-2.5-flash',
      contents: [user],
      config,
    });
    const parts: NonNullable<typeof turn>['parts'] = [];
    for await (const chunk of stream) parts.push(...(chunk.candidates?.[0]?.content?.parts ?? []));
    await sdk().models.generateContent({
      model: 'gemini-2.5-flash',
      config,
      contents: [
        user,
        { role: 'model', parts },
        {
          role: 'user',
          parts: [
            { functionResponse: { name: 'list_directory', response: { output: 'b.ts' } } },
            { functionResponse: { name: 'list_directory', response: { error: 'ENOENT' } } },
          ],
        },
      ],
    });
    const recs = (await tb.interceptions(before + 4, key)).slice(0, 4).reverse();
    const [calls1, results1, calls2, results2] = recs;
    const linked = (r: typeof calls1) =>
      r!.toolCalls.map((c) => [c.input, c.result?.interceptionId, c.result?.isError]);
    assert.deepEqual(linked(calls1), [
      [{ dir_path: 'src' }, results1!.id, false],
      [{ dir_path: 'no-such-dir' }, results1!.id, true],
    ]);
    assert.deepEqual(linked(calls2), [
      [{ dir_path: 'src' }, results2!.id, false],
      [{ dir_path: 'no-such-dir' }, results2!.id, true],
    ]);
    // Each result is recorded under its call's id; the two answers' calls have ids of their own.
    assert.deepEqual(
      results1!.toolResults?.map((r) => r.callId),
      [calls1!.toolCalls[1]!.id, calls1!.toolCalls[0]!.id],
    );
    assert.deepEqual(
      results2!.toolResults?.map((r) => r.callId),
      calls2!.toolCalls.map((c) => c.id),
    );
    assert.equal(new Set([...calls1!.toolCalls, ...calls2!.toolCalls].map((c) => c.id)).size, 4);
  });

  it('relays an upstream error in Google’s shape and records its status', async () => {
    const before = (await tb.interceptions(0, key)).length;
    await assert.rejects(
      sdk().models.generateContent({ model: 'gemini-overloaded', contents: 'hi' }),
      (err: Error & { status?: number }) => err.status === 503 && /overloaded/.test(err.message),
    );
    const rec = await next(before + 1);
    assert.equal(rec.status, 'error');
    assert.equal(rec.error?.type, 'UNAVAILABLE');
  });

  it('accepts the bridge key as ?key= and never forwards or logs it', async () => {
    const before = (await tb.interceptions(0, key)).length;
    const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=${key}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(res.status, 200);
    const up = mock.seen.at(-1)!;
    assert.equal(up.url, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(up.headers['x-goog-api-key'], GEMINI_UPSTREAM_KEY);
    const sse = await fetch(
      `${tb.url}/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=${key}&alt=sse`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }),
      },
    );
    assert.equal(sse.status, 200);
    await sse.text();
    assert.equal(mock.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    await next(before + 2);
    assert.ok(!tb.logs.join('').includes(key), 'the key appears in no log line');
  });

  it('refuses a wrong key in Google’s error shape', async () => {
    const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?key=nope`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.status, 401);
    const body = (await res.json()) as { error: { code: number; status: string; message: string } };
    assert.equal(body.error.code, 401);
    assert.equal(body.error.status, 'UNAUTHENTICATED');
    assert.equal(typeof body.error.message, 'string');
  });

  it('refuses an answer format it could not meter (alt=proto, $alt=media, %61lt=proto) or a field mask with 400 in Google’s shape; alt=json and alt=sse pass', async () => {
    const seen = mock.seen.length;
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] });
    for (const q of ['alt=proto', '%24alt=media', '%61lt=proto', 'alt=sse&alt=proto']) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?${q}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, q);
      const err = (await res.json()) as { error: { code: number; status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT', q);
      assert.match(err.error.message, /only JSON and SSE answers can be metered/, q);
    }
    // A field mask could leave usageMetadata out of the answer, which would be recorded as free.
    for (const q of [
      'fields=candidates',
      '%24fields=candidates',
      '%66ields=candidates',
      'alt=sse&fields=candidates',
    ]) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?${q}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, q);
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT', q);
      assert.match(err.error.message, /usage must reach the bridge/, q);
    }
    assert.equal(mock.seen.length, seen, 'nothing reached the provider');
    for (const [method, q] of [
      ['generateContent', 'alt=json'],
      ['streamGenerateContent', 'alt=sse'],
    ]) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:${method}?${q}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 200, q);
      await res.arrayBuffer();
    }
  });

  it('refuses service_tier priority (billed up to twice the standard prices it knows) in every spelling; standard and flex pass', async () => {
    const seen = mock.seen.length;
    const contents = [{ role: 'user', parts: [{ text: 'hi' }] }];
    for (const extra of [
      { service_tier: 'priority' },
      { serviceTier: 'SERVICE_TIER_PRIORITY' },
      { generationConfig: { serviceTier: 'priority' } },
      { serviceTier: 2 },
    ]) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-pro:generateContent`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ contents, ...extra }),
      });
      assert.equal(res.status, 400, JSON.stringify(extra));
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT');
      assert.match(err.error.message, /billed above the prices/);
    }
    assert.equal(mock.seen.length, seen, 'nothing reached the provider');
    for (const tier of ['standard', 'flex', 'SERVICE_TIER_FLEX']) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-pro:generateContent`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ contents, service_tier: tier }),
      });
      assert.equal(res.status, 200, tier);
      await res.arrayBuffer();
    }
  });

  it('refuses a JSONP callback (the answer would come as JavaScript, its usage unread, the prompt floored from the body)', async () => {
    const seen = mock.seen.length;
    // A cached content or a file by URI makes the real prompt far larger than the body: read from
    // usageMetadata it is exact; from a JSONP answer the bridge cannot parse, it was the body's size.
    const body = JSON.stringify({
      cachedContent: 'cachedContents/big-video',
      contents: [{ role: 'user', parts: [{ text: 'Summarise it' }] }],
    });
    for (const q of ['callback=cb', '%24callback=cb', '%63allback=cb', 'alt=json&callback=cb']) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-pro:generateContent?${q}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, `${q}: ${await res.clone().text()}`);
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT', q);
      assert.match(err.error.message, /callback/, q);
    }
    assert.equal(mock.seen.length, seen, 'nothing reached the provider');
  });

  it('floors the usage of an answer that reports none, also read whole before the client gets it', async () => {
    const body = JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi '.repeat(200) }] }] });
    const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash-nousage:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body,
    });
    assert.equal(res.status, 200);
    const id = res.headers.get('x-aibridge-interception-id');
    await res.arrayBuffer();
    const served = await eventually(async () => (await tb.interceptions(20, key)).find((r) => r.id === id));
    assert.equal(served.status, 'ok');
    assert.equal(served.usageEstimated, true);
    assert.ok(served.usage.input >= 150 && served.usage.output > 0, JSON.stringify(served.usage));

    // Read whole before the client gets it (its record stored first): the same floor.
    const acked = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_GEMINI_BASE_URL: mock.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
      AIBRIDGE_AUDIT_ACK: 'stored',
    });
    try {
      const k = (await acked.addUser('acked@example.com')).key;
      const whole = await fetch(
        `${acked.url}/gemini/v1beta/models/gemini-2.5-flash-nousage:generateContent`,
        {
          method: 'POST',
          headers: { 'x-goog-api-key': k, 'content-type': 'application/json' },
          body,
        },
      );
      assert.equal(whole.status, 200);
      await whole.arrayBuffer();
      const [rec] = await acked.interceptions(1, k);
      assert.equal(rec!.usageEstimated, true);
      assert.ok(rec!.usage.input >= 150 && rec!.usage.output > 0, JSON.stringify(rec!.usage));
    } finally {
      await acked.close();
    }
  });

  it('passes countTokens and the model list through, unmetered', async () => {
    const before = (await tb.interceptions(0, key)).length;
    const count = await sdk().models.countTokens({ model: 'gemini-2.5-flash', contents: 'hi' });
    assert.equal(count.totalTokens, 42);
    assert.equal(mock.seen.at(-1)!.url, '/v1beta/models/gemini-2.5-flash:countTokens');
    const list = await fetch(`${tb.url}/gemini/v1beta/models`, { headers: { 'x-goog-api-key': key } });
    assert.equal(list.status, 200);
    assert.deepEqual(await list.json(), { models: [{ name: 'models/gemini-2.5-flash' }] });
    assert.equal((await tb.interceptions(0, key)).length, before);
  });

  it('refuses a query parameter Google would read as a credential, a billed project or a content type, metered or not, before it goes upstream', async () => {
    // `?access_token=` that fails makes Google answer 401, and a 401 puts a pool key out of use
    // for everyone: one member's request took every key of a pool.
    const seen = mock.seen.length;
    const body = JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] });
    for (const path of [
      '/gemini/v1beta/models/gemini-2.5-flash:generateContent?access_token=x',
      '/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&%61ccess_token=x',
      '/gemini/v1beta/models/gemini-2.5-flash:generateContent?oauth_token=x',
      '/gemini/v1beta/models/gemini-2.5-flash:generateContent?userProject=someone-elses',
      '/gemini/v1beta/models/gemini-2.5-flash:generateContent?%24ct=text%2Fplain',
      '/gemini/v1beta/models/gemini-2.5-flash:countTokens?access_token=x',
      '/gemini/v1beta/models/gemini-2.5-flash:countTokens?$userProject=p',
    ]) {
      const res = await fetch(`${tb.url}${path}`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, path);
      const err = (await res.json()) as { error: { status: string; message: string } };
      assert.equal(err.error.status, 'INVALID_ARGUMENT');
      assert.match(err.error.message, /does not accept the query parameter/);
    }
    assert.equal(mock.seen.length, seen, 'nothing went upstream');
    // What Google's own clients send still goes.
    const ok = await fetch(
      `${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent?prettyPrint=false&$.xgafv=2`,
      { method: 'POST', headers: { 'x-goog-api-key': key, 'content-type': 'application/json' }, body },
    );
    assert.equal(ok.status, 200);
    assert.equal(
      mock.seen.at(-1)!.url,
      '/v1beta/models/gemini-2.5-flash:generateContent?prettyPrint=false&$.xgafv=2',
    );
  });

  it('refuses a countTokens body that names a key twice, or is no JSON object, in Gemini’s shape, before it goes upstream', async () => {
    const seen = mock.seen.length;
    for (const body of ['{"contents":[{"parts":[{"text":"hi"}]}],"contents":[]}', 'not json', '[1,2]']) {
      const res = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:countTokens`, {
        method: 'POST',
        headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 400, body);
      assert.equal(((await res.json()) as { error: { status: string } }).error.status, 'INVALID_ARGUMENT');
    }
    assert.equal(mock.seen.length, seen, 'nothing went upstream');
  });

  it('serves the v1 API too, and refuses a path that is neither metered nor allowed', async () => {
    const res = await fetch(`${tb.url}/gemini/v1/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
    });
    assert.equal(res.status, 200);
    assert.equal(mock.seen.at(-1)!.url, '/v1/models/gemini-2.5-flash:generateContent');
    const other = await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:batchGenerateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(other.status, 404);
    assert.equal(((await other.json()) as { error: { status: string } }).error.status, 'NOT_FOUND');
  });

  it('refuses a "#" in the path: upstream it would cut the path behind the free route judged here', async () => {
    // `…:generateContent#:countTokens` looked like countTokens (unmetered) to the router, and the
    // upstream URL's parser dropped the fragment: a paid generation, no budget, no record.
    for (const path of [
      '/gemini/v1beta/models/gemini-2.5-pro:generateContent#:countTokens',
      '/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent#/x:countTokens',
      '/gemini/v1beta/models/gemini-2.5-pro:predictLongRunning#:countTokens',
      // Escaped, for a server that decodes the path before it splits off the query or fragment.
      '/gemini/v1beta/models/gemini-2.5-pro:generateContent%3F:countTokens',
      '/gemini/v1beta/models/gemini-2.5-pro:generateContent%3f:countTokens',
      '/gemini/v1beta/models/gemini-2.5-pro:generateContent%23:countTokens',
    ]) {
      const seen = mock.seen.length;
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const u = new URL(tb.url);
        const req = http.request(
          {
            host: u.hostname,
            port: u.port,
            method: 'POST',
            path,
            headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
            agent: false,
          },
          (r) => {
            let body = '';
            r.on('data', (c: Buffer) => {
              body += c;
            });
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }));
      });
      assert.equal(res.status, 400, `${path}: ${res.body}`);
      assert.match(res.body, /dot segments, encoded separators or a/);
      assert.equal(mock.seen.length, seen, `${path} reached the provider`);
    }
  });

  it('labels Gemini CLI by its user agent', async () => {
    const before = (await tb.interceptions(0, key)).length;
    await fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': key,
        'content-type': 'application/json',
        'user-agent': 'GeminiCLI/0.9.0/gemini-2.5-flash (linux; x64)',
      },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
    });
    assert.equal((await next(before + 1)).client, 'gemini-cli');
  });

  it('holds function calls a deny rule names: the client gets the denial as text, the record the mark', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [
        { id: 'no-paris', tool: 'get_weather', argumentPattern: 'Paris', action: 'deny', scope: 'org' },
      ],
    });
    assert.equal(put.status, 200);
    try {
      const before = (await tb.interceptions(0, key)).length;
      const res = await sdk().models.generateContent({
        model: 'gemini-tools',
        contents: 'Weather in Paris?',
      });
      assert.equal(res.functionCalls, undefined);
      assert.match(res.text ?? '', /no-paris/);
      const stream = await sdk().models.generateContentStream({ model: 'gemini-tools', contents: 'again' });
      let text = '';
      for await (const chunk of stream) {
        assert.equal(chunk.functionCalls, undefined);
        text += chunk.text ?? '';
      }
      assert.match(text, /no-paris/);
      const recs = await tb.interceptions(before + 2, key);
      for (const rec of recs.slice(0, 2))
        assert.deepEqual(rec.toolCalls[0]?.policy, { rule: 'no-paris', action: 'deny' });
    } finally {
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] });
    }
  });

  it('a deny rule on an MCP server in Claude Code’s form holds Gemini CLI’s name for its tools (mcp_<server>_<tool>)', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-merges', tool: 'mcp__github__merge_*', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    try {
      const before = (await tb.interceptions(0, key)).length;
      const denied = await sdk().models.generateContent({
        model: 'gemini-2.5-flash',
        contents: 'CALL:mcp_github_merge_pull_request',
      });
      assert.equal(denied.functionCalls, undefined, 'the call never reaches the agent');
      assert.match(denied.text ?? '', /no-merges/);
      const other = await sdk().models.generateContent({
        model: 'gemini-2.5-flash',
        contents: 'CALL:mcp_gitlab_merge_pull_request',
      });
      assert.equal(other.functionCalls?.[0]?.name, 'mcp_gitlab_merge_pull_request', 'another server’s tool');
      const [second, first] = await tb.interceptions(before + 2, key);
      assert.equal(
        first?.toolCalls[0]?.name,
        'mcp_github_merge_pull_request',
        'recorded as the agent named it',
      );
      assert.deepEqual(first?.toolCalls[0]?.policy, { rule: 'no-merges', action: 'deny' });
      assert.equal(second?.toolCalls[0]?.policy, undefined);
    } finally {
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] });
    }
  });

  it('has no built-in instance without a key', async () => {
    const plain = await startBridge('http://127.0.0.1:9');
    try {
      const res = await fetch(`${plain.url}/gemini/v1beta/models`, {
        headers: { 'x-goog-api-key': plain.adminKey },
      });
      assert.equal(res.status, 404);
    } finally {
      await plain.close();
    }
  });
});
