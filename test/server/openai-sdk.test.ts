import assert from 'node:assert/strict';
import OpenAI, { APIError } from 'openai';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OPENAI_TEXT, OPENAI_UPSTREAM_KEY, OPENAI_USAGE, OpenAIMock } from '../helpers/openai-mock';

const expectedUsage = {
  input: OPENAI_USAGE.input - OPENAI_USAGE.cached,
  cacheRead: OPENAI_USAGE.cached,
  cacheWrite: 0,
  output: OPENAI_USAGE.output,
  reasoning: OPENAI_USAGE.reasoning,
};

describe('OpenAI SDK through the bridge', () => {
  let anthropic: AnthropicMock;
  let mock: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string } };
  let client: OpenAI;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    mock = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: mock.url });
    dev = await tb.addUser('openai-dev@example.com', { team: 'ml' });
    client = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });
  after(async () => {
    await tb.close();
    await mock.stop();
    await anthropic.stop();
  });

  async function latest(n: number) {
    return (await tb.interceptions(n, dev.key))[0]!;
  }
  async function count(): Promise<number> {
    return (await tb.interceptions(0, dev.key)).length;
  }

  describe('Chat Completions', () => {
    it('creates a completion; upstream sees the organisation key; usage is normalised', async () => {
      const n = await count();
      const res = await client.chat.completions.create({
        model: 'gpt-5',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: 'Hi there' },
        ],
      });
      assert.equal(res.choices[0]?.message.content, OPENAI_TEXT);
      const seen = mock.modelRequests().at(-1)!;
      assert.equal(seen.headers.authorization, `Bearer ${OPENAI_UPSTREAM_KEY}`);
      assert.ok(!JSON.stringify(seen.headers).includes(dev.key));
      const rec = await latest(n + 1);
      assert.equal(rec.provider, 'openai');
      assert.equal(rec.api, 'chat.completions');
      assert.equal(rec.client, 'openai-sdk-js');
      assert.equal(rec.model, 'gpt-5');
      assert.equal(rec.prompt, 'Hi there');
      assert.equal(rec.status, 'ok');
      assert.equal(rec.streamed, false);
      assert.deepEqual(rec.usage, expectedUsage);
      assert.match(rec.upstreamRequestId ?? '', /^req_/);
    });

    it('an answer served at the priority tier (a project’s default) is billed at twice the standard price, streamed and not', async () => {
      const ask = async (stream: boolean) => {
        const n = await count();
        if (stream)
          for await (const _ of await client.chat.completions.create({
            model: 'gpt-5',
            stream: true,
            messages: [{ role: 'user', content: 'tier' }],
          }));
        else
          await client.chat.completions.create({
            model: 'gpt-5',
            messages: [{ role: 'user', content: 'tier' }],
          });
        return latest(n + 1);
      };
      for (const stream of [false, true]) {
        const standard = await ask(stream);
        assert.equal(standard.costSource, undefined);
        mock.serviceTier = 'priority';
        try {
          const priority = await ask(stream);
          assert.equal(priority.costSource, 'priority-tier', `stream ${stream}`);
          assert.equal(
            priority.costUsd!.toFixed(10),
            (standard.costUsd! * 2).toFixed(10),
            `stream ${stream}`,
          );
        } finally {
          mock.serviceTier = 'default';
        }
      }
      // An admin's price is what is paid: not doubled. Scale Tier (prepaid capacity) is not either.
      const put = await tb.api('PUT', '/api/v1/prices/gpt-5', tb.adminKey, {
        input_mtok: 2.5,
        output_mtok: 20,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      try {
        const standard = await ask(false);
        for (const tier of ['priority', 'scale']) {
          mock.serviceTier = tier;
          try {
            const rec = await ask(false);
            assert.equal(rec.costSource, undefined, tier);
            assert.equal(rec.costUsd, standard.costUsd, tier);
          } finally {
            mock.serviceTier = 'default';
          }
        }
      } finally {
        await tb.api('DELETE', '/api/v1/prices/gpt-5', tb.adminKey);
      }
    });

    it('an answer served with Flex processing (Codex’s service_tier "flex") is billed at half the standard price, on Chat and Responses, streamed and not', async () => {
      const ask = async (api: 'chat' | 'responses', stream: boolean, tier?: 'flex') => {
        const n = await count();
        const extra = tier ? { service_tier: tier } : {};
        if (api === 'chat') {
          const body = { model: 'gpt-5', messages: [{ role: 'user' as const, content: 'tier' }], ...extra };
          if (stream) for await (const _ of await client.chat.completions.create({ ...body, stream: true }));
          else await client.chat.completions.create(body);
        } else {
          const body = { model: 'gpt-5', input: 'tier', ...extra };
          if (stream) for await (const _ of await client.responses.create({ ...body, stream: true }));
          else await client.responses.create(body);
        }
        return latest(n + 1);
      };
      for (const api of ['chat', 'responses'] as const)
        for (const stream of [false, true]) {
          const standard = await ask(api, stream);
          assert.equal(standard.costSource, undefined);
          mock.serviceTier = 'flex';
          try {
            const flex = await ask(api, stream, 'flex');
            assert.equal(
              JSON.parse(mock.modelRequests().at(-1)!.body).service_tier,
              'flex',
              'the tier went upstream',
            );
            assert.equal(flex.costSource, 'flex-tier', `${api} stream ${stream}`);
            assert.deepEqual(flex.usage, standard.usage);
            assert.equal(
              flex.costUsd!.toFixed(10),
              (standard.costUsd! / 2).toFixed(10),
              `${api} stream ${stream}`,
            );
          } finally {
            mock.serviceTier = 'default';
          }
        }
    });

    it('prices the audio of an audio model at its own prices, streamed and not', async () => {
      const usage = { input: 1000, cached: 0, output: 500, reasoning: 0, audioIn: 900, audioOut: 480 };
      const n = await count();
      const body = {
        model: 'gpt-audio',
        modalities: ['text' as const, 'audio' as const],
        audio: { voice: 'alloy' as const, format: 'wav' as const },
        messages: [{ role: 'user' as const, content: 'Say hi' }],
      };
      mock.next({ kind: 'text', usage });
      await client.chat.completions.create(body);
      mock.next({ kind: 'text', usage });
      for await (const _ of await client.chat.completions.create({ ...body, stream: true })) {
        // drained
      }
      for (const rec of (await tb.interceptions(n + 2, dev.key)).slice(0, 2)) {
        assert.deepEqual(rec.usage, {
          input: 1000,
          cacheRead: 0,
          cacheWrite: 0,
          output: 500,
          reasoning: 0,
          inputAudio: 900,
          outputAudio: 480,
        });
        // gpt-audio: text $2.50 in and $10 out, audio $32 in and $64 out per million.
        const want = (100 * 2.5 + 900 * 32 + 20 * 10 + 480 * 64) / 1e6;
        assert.ok(Math.abs(rec.costUsd! - want) < 1e-12, String(rec.costUsd));
      }
    });

    it('asks for stream usage when the client did not, and hides it again', async () => {
      const n = await count();
      const stream = await client.chat.completions.create({
        model: 'gpt-5',
        stream: true,
        messages: [{ role: 'user', content: 'stream it' }],
      });
      const chunks: Record<string, unknown>[] = [];
      for await (const chunk of stream) chunks.push(chunk as unknown as Record<string, unknown>);
      assert.equal(
        chunks
          .map((c) => (c as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? '')
          .join(''),
        OPENAI_TEXT,
      );
      assert.ok(
        chunks.every((c) => !('usage' in c)),
        'no chunk carries usage the client did not ask for',
      );
      assert.ok(
        chunks.every((c) => (c.choices as unknown[]).length > 0),
        'no usage-only chunk',
      );
      const sent = JSON.parse(mock.modelRequests().at(-1)!.body) as {
        stream_options?: { include_usage?: boolean };
      };
      assert.equal(sent.stream_options?.include_usage, true);
      const rec = await latest(n + 1);
      assert.equal(rec.streamed, true);
      assert.deepEqual(rec.usage, expectedUsage);
    });

    it('passes the usage chunk through untouched when the client asked for it', async () => {
      const n = await count();
      const stream = await client.chat.completions.create({
        model: 'gpt-5',
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'with usage' }],
      });
      let usage: unknown;
      for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
      assert.equal((usage as { prompt_tokens: number }).prompt_tokens, OPENAI_USAGE.input);
      assert.deepEqual((await latest(n + 1)).usage, expectedUsage);
    });

    it('records tool calls assembled from streamed deltas, and from a whole response', async () => {
      const args = { city: 'Paris', unit: 'celsius' };
      mock.next(
        { kind: 'tool', name: 'get_weather', arguments: args },
        { kind: 'tool', name: 'mcp__maps__route', arguments: { to: 'Lyon' } },
      );
      const n = await count();
      const tools = [
        {
          type: 'function' as const,
          function: { name: 'get_weather', parameters: { type: 'object', properties: {} } },
        },
      ];
      const stream = await client.chat.completions.create({
        model: 'gpt-5',
        stream: true,
        tools,
        messages: [{ role: 'user', content: 'weather?' }],
      });
      let streamedArgs = '';
      for await (const chunk of stream)
        streamedArgs += chunk.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '';
      assert.deepEqual(JSON.parse(streamedArgs), args);
      const whole = await client.chat.completions.create({
        model: 'gpt-5',
        tools,
        messages: [{ role: 'user', content: 'route?' }],
      });
      assert.equal(whole.choices[0]?.finish_reason, 'tool_calls');
      const [second, first] = await tb.interceptions(n + 2, dev.key);
      assert.deepEqual(
        first!.toolCalls.map((c) => [c.id, c.name, c.server, c.input, c.injected]),
        [['call_mock_1', 'get_weather', null, args, false]],
      );
      assert.deepEqual(
        second!.toolCalls.map((c) => [c.name, c.server, c.input]),
        [['mcp__maps__route', 'maps', { to: 'Lyon' }]],
      );
    });

    it('passes a 429 through in OpenAI shape with its headers, and records it', async () => {
      mock.next({
        kind: 'error',
        status: 429,
        type: 'requests',
        code: 'rate_limit_exceeded',
        message: 'Rate limit reached for gpt-5',
        headers: { 'retry-after': '3', 'x-ratelimit-remaining-requests': '0' },
      });
      const n = await count();
      await assert.rejects(
        client.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'x' }] }),
        (err: unknown) => {
          assert.ok(err instanceof APIError);
          assert.equal(err.status, 429);
          assert.equal(err.code, 'rate_limit_exceeded');
          assert.equal(err.headers?.get('retry-after'), '3');
          assert.equal(err.headers?.get('x-ratelimit-remaining-requests'), '0');
          return true;
        },
      );
      const rec = await latest(n + 1);
      assert.equal(rec.status, 'error');
      assert.equal(rec.httpStatus, 429);
      assert.deepEqual(rec.error, { type: 'requests', message: 'Rate limit reached for gpt-5' });
    });

    it('relays a mid-stream error to the SDK and records it', async () => {
      mock.next({ kind: 'mid-stream-error' });
      const n = await count();
      await assert.rejects(async () => {
        const stream = await client.chat.completions.create({
          model: 'gpt-5',
          stream: true,
          messages: [{ role: 'user', content: 'x' }],
        });
        for await (const _ of stream) {
          // drain
        }
      }, /server had an error/);
      const rec = await latest(n + 1);
      assert.equal(rec.status, 'error');
      assert.equal(rec.error?.type, 'server_error');
    });
  });

  describe('Responses', () => {
    it('meters responses.compact (Codex’s remote compaction) as a Responses call, with its usage', async () => {
      const n = await count();
      const compacted = await client.responses.compact({
        model: 'gpt-5',
        input: [{ role: 'user', content: 'a long conversation' }],
      });
      assert.equal(compacted.object, 'response.compaction');
      assert.equal(mock.requests.at(-1)!.url, '/v1/responses/compact');
      const rec = await latest(n + 1);
      assert.equal(rec.api, 'responses');
      assert.equal(rec.model, 'gpt-5');
      assert.equal(rec.status, 'ok');
      assert.deepEqual(rec.usage, expectedUsage);
      assert.ok(rec.costUsd !== null && rec.costUsd > 0);
    });

    it('creates a response with normalised usage', async () => {
      const n = await count();
      const res = await client.responses.create({ model: 'gpt-5', input: 'Tell me a joke' });
      assert.equal(res.output_text, OPENAI_TEXT);
      const rec = await latest(n + 1);
      assert.equal(rec.api, 'responses');
      assert.equal(rec.prompt, 'Tell me a joke');
      assert.deepEqual(rec.usage, expectedUsage);
      assert.equal(rec.streamed, false);
    });

    it('streams a response; usage comes from response.completed', async () => {
      const n = await count();
      const stream = await client.responses.create({
        model: 'gpt-5',
        stream: true,
        input: [
          { role: 'developer', content: 'be brief' },
          { role: 'user', content: [{ type: 'input_text', text: 'What is 2+2?' }] },
        ],
      });
      let text = '';
      for await (const ev of stream) if (ev.type === 'response.output_text.delta') text += ev.delta;
      assert.equal(text, OPENAI_TEXT);
      const rec = await latest(n + 1);
      assert.equal(rec.streamed, true);
      assert.equal(rec.prompt, 'What is 2+2?');
      assert.deepEqual(rec.usage, expectedUsage);
    });

    it('records function, custom, local shell and MCP calls, streamed and not', async () => {
      mock.next(
        { kind: 'tool', name: 'exec_command', arguments: { cmd: 'pwd' } },
        { kind: 'mixed-tools' },
        { kind: 'mixed-tools' },
      );
      const n = await count();
      const s1 = await client.responses.create({ model: 'gpt-5', stream: true, input: 'run pwd' });
      for await (const _ of s1) {
        // drain
      }
      const s2 = await client.responses.create({ model: 'gpt-5', stream: true, input: 'do things' });
      for await (const _ of s2) {
        // drain
      }
      await client.responses.create({ model: 'gpt-5', input: 'do things again' });
      const [whole, mixed, fn] = await tb.interceptions(n + 3, dev.key);
      assert.deepEqual(
        fn!.toolCalls.map((c) => [c.id, c.name, c.input]),
        [['call_mock_1', 'exec_command', { cmd: 'pwd' }]],
      );
      const expected = [
        ['call_patch', 'apply_patch', null, '*** Begin Patch\n*** End Patch'],
        ['call_shell', 'local_shell', null, { type: 'exec', command: ['ls', '-la'], env: {} }],
        [
          'call_shell2',
          'shell',
          null,
          { commands: ['git status'], timeout_ms: 1000, max_output_length: null },
        ],
        ['mcp_1', 'search_docs', 'docs', { q: 'bridge' }],
      ];
      assert.deepEqual(
        mixed!.toolCalls.map((c) => [c.id, c.name, c.server, c.input]),
        expected,
      );
      assert.deepEqual(
        whole!.toolCalls.map((c) => [c.id, c.name, c.server, c.input]),
        expected,
      );
    });

    it('relays a mid-stream error event and records it', async () => {
      mock.next({ kind: 'mid-stream-error' });
      const n = await count();
      const stream = await client.responses.create({ model: 'gpt-5', stream: true, input: 'x' });
      const types: string[] = [];
      try {
        for await (const ev of stream) types.push(ev.type);
      } catch {
        // the SDK may throw on an error event; either way the client learnt of it
      }
      assert.ok(types.includes('error') || types.length < 3);
      const rec = await latest(n + 1);
      assert.equal(rec.status, 'error');
      assert.equal(rec.error?.type, 'server_error');
    });

    it('refuses background: true with 400 unsupported_parameter, streamed or not, without contacting upstream', async () => {
      // Its usage would come later, through GET /responses/{id}: unmetered, so a free generation.
      const before = mock.requests.length;
      for (const stream of [false, true]) {
        await assert.rejects(
          () => client.responses.create({ model: 'gpt-5', input: 'a long task', background: true, stream }),
          (err: unknown) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.status, 400);
            assert.equal(err.code, 'unsupported_parameter');
            assert.match(err.message, /background/);
            return true;
          },
        );
      }
      assert.equal(mock.requests.length, before);
      // `background: false` is the default and goes through.
      const res = await client.responses.create({ model: 'gpt-5', input: 'x', background: false });
      assert.equal(res.object, 'response');
      assert.equal(mock.requests.length, before + 1);
    });

    it('refuses the hosted image_generation tool (its images are billed outside the usage) without contacting upstream; web search passes', async () => {
      const before = mock.requests.length;
      for (const stream of [false, true]) {
        await assert.rejects(
          () =>
            client.responses.create({
              model: 'gpt-5',
              input: 'draw a cat',
              tools: [
                { type: 'web_search' },
                { type: 'image_generation', quality: 'high', size: '1536x1024' },
              ],
              stream,
            }),
          (err: unknown) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.status, 400);
            assert.equal(err.code, 'unsupported_parameter');
            assert.match(err.message, /image_generation/);
            return true;
          },
        );
      }
      assert.equal(mock.requests.length, before);
      const res = await client.responses.create({
        model: 'gpt-5',
        input: 'x',
        tools: [{ type: 'web_search' }],
      });
      assert.equal(res.object, 'response');
      assert.equal(mock.requests.length, before + 1);
    });

    it('refuses service_tier priority (billed above the prices it knows) on both APIs; flex and default pass', async () => {
      const before = mock.requests.length;
      const refused = (err: unknown): boolean => {
        assert.ok(err instanceof OpenAI.APIError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.code, 'unsupported_parameter');
        assert.match(err.message, /service_tier/);
        return true;
      };
      await assert.rejects(
        () => client.responses.create({ model: 'gpt-5', input: 'x', service_tier: 'priority' }),
        refused,
      );
      await assert.rejects(
        () =>
          client.chat.completions.create({
            model: 'gpt-4o',
            messages: [{ role: 'user', content: 'x' }],
            service_tier: 'priority',
          }),
        refused,
      );
      assert.equal(mock.requests.length, before, 'nothing reached the provider');
      const flex = await client.responses.create({ model: 'gpt-5', input: 'x', service_tier: 'flex' });
      assert.equal(flex.object, 'response');
      const chat = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'x' }],
        service_tier: 'default',
      });
      assert.equal(chat.object, 'chat.completion');
    });
  });

  describe("the bridge's own answers on OpenAI routes", () => {
    it('refuses a missing or revoked key in OpenAI shape without contacting upstream', async () => {
      const before = mock.requests.length;
      const bad = new OpenAI({
        apiKey: 'sk-not-a-bridge-key',
        baseURL: `${tb.url}/openai/v1`,
        maxRetries: 0,
      });
      await assert.rejects(
        bad.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'x' }] }),
        (err: unknown) => {
          assert.ok(err instanceof APIError);
          assert.equal(err.status, 401);
          assert.equal(err.code, 'unauthorized');
          assert.equal(err.type, 'authentication_error');
          return true;
        },
      );
      assert.equal(mock.requests.length, before);
    });

    it('answers non-JSON, non-object and unknown routes in OpenAI shape', async () => {
      const before = mock.requests.length;
      const post = (path: string, body: string) =>
        fetch(`${tb.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
          body,
        });
      for (const [res, status, code] of [
        [await post('/openai/v1/chat/completions', '{"model":'), 400, 'invalid_json'],
        [await post('/openai/v1/responses', '"just a string"'), 400, 'invalid_json'],
        [await post('/openai/nope', '{}'), 404, 'not_found'],
      ] as const) {
        assert.equal(res.status, status);
        const body = (await res.json()) as { error: { code: string; type: string; message: string } };
        assert.equal(body.error.code, code);
        assert.equal(typeof body.error.message, 'string');
        assert.equal(typeof body.error.type, 'string');
      }
      assert.equal(mock.requests.length, before);
    });

    it('passes other /openai/v1 paths through; the model list is the bridge’s own', async () => {
      const before = mock.requests.length;
      const models = await client.models.list();
      assert.ok(models.data.some((m) => m.id === 'gpt-5'));
      assert.equal(mock.requests.length, before);
      // A stored response passes through for the member who created it (docs/security.md).
      const { id } = await client.responses.create({ model: 'gpt-5', input: 'keep this' });
      const stored = await fetch(`${tb.url}/openai/v1/responses/${id}`, {
        headers: { authorization: `Bearer ${dev.key}` },
      });
      assert.equal(stored.status, 200);
      const back = (await stored.json()) as { id: string; object: string };
      assert.deepEqual([back.id, back.object], [id, 'response']);
      assert.equal(mock.requests.at(-1)!.url, `/v1/responses/${id}`);
    });
  });
});
