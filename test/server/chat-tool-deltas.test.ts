import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { chatInjection } from '../../server/providers/openai/chat-injection';
import { DROP, type EventVerdict, FORWARD, type SseEvent } from '../../server/providers/types';
import type { ToolPolicyRule } from '../../shared/tool-policy';
import { startBridge, type TestBridge } from '../helpers/bridge';

/**
 * Chat Completions streams a tool call in deltas. OpenAI names the function in the first only;
 * some compatible servers repeat `function.name` in every delta. The official SDK's assembler
 * takes a delta's name as the name (it never appends), so the bridge must read it the same way:
 * appending, it judged and recorded `BashBashBash` while the client ran `Bash`.
 */
const ARGS = ['{"command"', ':"rm -rf', ' / --no-preserve-root"}'];

function chunk(delta: Record<string, unknown>, finish: string | null = null): string {
  const c = {
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'gpt-5',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  };
  return `data: ${JSON.stringify(c)}\n\n`;
}

/**
 * Gemini's OpenAI-compatible endpoint: tool-call deltas without `index`, each call under its own
 * `id` (here the first in two pieces, the second whole), the turn finished as `stop`.
 */
function streamWithoutIndexes(): string {
  const fn = (name: string | undefined, args: string) => ({ ...(name ? { name } : {}), arguments: args });
  return [
    chunk({
      role: 'assistant',
      tool_calls: [{ id: 'call_a', type: 'function', function: fn('Bash', '{"command":"rm -rf') }],
    }),
    chunk({ tool_calls: [{ function: fn(undefined, ' / --no-preserve-root"}') }] }),
    chunk({
      tool_calls: [{ id: 'call_b', type: 'function', function: fn('Read', '{"file_path":"/tmp/x"}') }],
    }),
    chunk({}, 'stop'),
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-5', choices: [], usage: { prompt_tokens: 20, completion_tokens: 9, total_tokens: 29 } })}\n\n`,
    'data: [DONE]\n\n',
  ].join('');
}

function streamWithRepeatedNames(includeUsage: boolean): string {
  let out = chunk({ role: 'assistant', content: null });
  ARGS.forEach((part, i) => {
    out += chunk({
      tool_calls: [
        {
          index: 0,
          ...(i === 0 ? { id: 'call_1', type: 'function' } : {}),
          function: { name: 'Bash', arguments: part },
        },
      ],
    });
  });
  out += chunk({}, 'tool_calls');
  if (includeUsage)
    out += `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-5', choices: [], usage: { prompt_tokens: 20, completion_tokens: 9, total_tokens: 29 } })}\n\n`;
  return `${out}data: [DONE]\n\n`;
}

describe('Chat Completions tool calls whose every delta repeats the name', function () {
  this.timeout(30_000);
  let upstream: http.Server;
  let tb: TestBridge;
  let dev: { key: string };

  before(async () => {
    upstream = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          model?: string;
          stream_options?: { include_usage?: boolean };
        };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(
          body.model === 'gemini-2.5-flash'
            ? streamWithoutIndexes()
            : streamWithRepeatedNames(body.stream_options?.include_usage === true),
        );
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    tb = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_OPENAI_BASE_URL: url,
      AIBRIDGE_OPENAI_API_KEY: 'sk-org',
    });
    dev = await tb.addUser('deltas@example.com');
  });

  after(async () => {
    await tb?.close();
    upstream?.closeAllConnections();
    await new Promise<void>((r) => upstream?.close(() => r()));
  });

  it('records the call by the name the SDK assembles, and a deny rule on it holds the call', async () => {
    const openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    const ask = () =>
      openai.chat.completions
        .stream({
          model: 'gpt-5',
          tools: [{ type: 'function', function: { name: 'Bash', parameters: { type: 'object' } } }],
          messages: [{ role: 'user', content: 'tidy up' }],
        })
        .finalChatCompletion();

    // No rule: the SDK assembles `Bash`, and so must the record.
    const first = await ask();
    const call = first.choices[0]!.message.tool_calls?.[0];
    assert.ok(call?.type === 'function');
    assert.equal(call.function.name, 'Bash', 'what the client runs');
    const rec = (await tb.interceptions(1, dev.key))[0]!;
    assert.deepEqual(
      rec.toolCalls.map((c) => [c.name, c.input]),
      [['Bash', { command: 'rm -rf / --no-preserve-root' }]],
    );

    // A deny rule on Bash: the client never gets the call.
    const rules: ToolPolicyRule[] = [
      { id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' },
    ];
    assert.equal((await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules })).status, 200);
    const second = await ask();
    assert.equal(second.choices[0]!.message.tool_calls?.length ?? 0, 0, 'the denied call was held');
    assert.match(second.choices[0]!.message.content ?? '', /blocked Bash/);
    const denied = (await tb.interceptions(2, dev.key))[0]!;
    assert.deepEqual(denied.toolCalls[0]?.policy, { rule: 'rm-root', action: 'deny' });
  });

  it('tells calls without an index apart by id (Gemini’s OpenAI endpoint): each recorded whole, a denied one held', async () => {
    assert.equal((await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: [] })).status, 200);
    const ask = async (): Promise<string> => {
      const res = await fetch(`${tb.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gemini-2.5-flash',
          stream: true,
          messages: [{ role: 'user', content: 'tidy' }],
        }),
      });
      assert.equal(res.status, 200);
      return res.text();
    };
    const n = (await tb.interceptions(0, dev.key)).length;
    await ask();
    const rec = (await tb.interceptions(n + 1, dev.key))[0]!;
    assert.deepEqual(
      rec.toolCalls.map((c) => [c.id, c.name, c.input]),
      [
        ['call_a', 'Bash', { command: 'rm -rf / --no-preserve-root' }],
        ['call_b', 'Read', { file_path: '/tmp/x' }],
      ],
    );

    const rules: ToolPolicyRule[] = [
      { id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' },
    ];
    assert.equal((await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules })).status, 200);
    const text = await ask();
    assert.doesNotMatch(text, /"name":"Bash"/, 'the denied call never reaches the client');
    assert.match(text, /"name":"Read"/, 'the allowed one does');
    assert.match(text, /blocked Bash/);
    const denied = (await tb.interceptions(n + 2, dev.key))[0]!;
    assert.deepEqual(
      denied.toolCalls.map((c) => [c.name, c.policy?.action ?? null]),
      [
        ['Bash', 'deny'],
        ['Read', null],
      ],
    );
  });
});

describe('MCP tool injection on a Chat Completions stream whose calls have no index', () => {
  /** One chunk's event as the exchange hands it to the injected stream. */
  const ev = (delta: Record<string, unknown>, finish: string | null = null): SseEvent => ({
    event: undefined,
    id: undefined,
    data: chunk(delta, finish).slice('data: '.length).trim(),
  });
  const verdictData = (v: EventVerdict, original: SseEvent): string | null =>
    v === DROP ? null : v === FORWARD ? original.data : v.action === 'replace' ? v.data : original.data;

  it('runs the injected call and shows the client its own, each whole and numbered (Gemini’s OpenAI endpoint)', () => {
    const stream = chatInjection.createStream({ stream: true }, (name) => name === 'docs__search');
    stream.beginRound(false);
    const events = [
      ev({
        role: 'assistant',
        tool_calls: [
          { id: 'call_i', type: 'function', function: { name: 'docs__search', arguments: '{"q":' } },
        ],
      }),
      ev({ tool_calls: [{ function: { arguments: '"mcp"}' } }] }),
      ev({
        tool_calls: [
          { id: 'call_c', type: 'function', function: { name: 'Read', arguments: '{"file_path":"/a"}' } },
        ],
      }),
      // Gemini finishes a turn with calls as `stop`.
      ev({}, 'stop'),
    ];
    const shown = events.map((e) => verdictData(stream.onEvent(e), e)).filter((d): d is string => d !== null);
    const calls = shown.flatMap(
      (d) =>
        (
          JSON.parse(d) as {
            choices: {
              delta: { tool_calls?: { index: number; id?: string; function?: { name?: string } }[] };
            }[];
          }
        ).choices[0]?.delta.tool_calls ?? [],
    );
    // The client's call alone reaches it, numbered as its SDK needs; the injected one never does.
    assert.deepEqual(
      calls.map((c) => [c.index, c.id, c.function?.name]),
      [[0, 'call_c', 'Read']],
    );
    const end = stream.endRound();
    // A client call beside the injected one: the round ends, the injected call is left unrun, whole.
    assert.equal(end.continues, false);
    assert.deepEqual(end.calls, [{ id: 'call_i', name: 'docs__search', input: { q: 'mcp' } }]);
  });

  it('goes on to the next round when the model called only injected tools and finished as stop', () => {
    const stream = chatInjection.createStream({ stream: true }, (name) => name.startsWith('docs__'));
    stream.beginRound(false);
    for (const e of [
      ev({
        role: 'assistant',
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'docs__search', arguments: '{"q":"a"}' } },
        ],
      }),
      ev({
        tool_calls: [
          { id: 'call_2', type: 'function', function: { name: 'docs__fetch', arguments: '{"url":"b"}' } },
        ],
      }),
      ev({}, 'stop'),
    ])
      stream.onEvent(e);
    const end = stream.endRound();
    assert.equal(end.continues, true);
    assert.deepEqual(
      end.calls.map((c) => [c.id, c.name, c.input]),
      [
        ['call_1', 'docs__search', { q: 'a' }],
        ['call_2', 'docs__fetch', { url: 'b' }],
      ],
    );
    // The turn the next request carries holds both calls, not one merged.
    const turn = end.turn as { tool_calls: { id: string; function: { name: string; arguments: string } }[] };
    assert.deepEqual(
      turn.tool_calls.map((c) => [c.id, c.function.name, c.function.arguments]),
      [
        ['call_1', 'docs__search', '{"q":"a"}'],
        ['call_2', 'docs__fetch', '{"url":"b"}'],
      ],
    );
  });
});
