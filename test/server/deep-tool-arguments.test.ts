import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { NESTED_TOO_DEEP, VALUE_DEPTH } from '../../server/audit/redact';
import type { Interception } from '../../shared/interception';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { type Listening, listenOnLoopback } from '../helpers/loopback';
import { everythingStdio } from '../helpers/mcp-servers';

/**
 * A member can ask the model for a tool call whose arguments nest 10,000 levels deep (20 KB of
 * brackets). Request bodies are bounded by AIBRIDGE_MAX_JSON_DEPTH; a model's answer is not, so the
 * bridge's own walks over tool arguments must not recurse that deep.
 */
const DEPTH = 10_000;
const nested = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`;
/** Arguments (as JSON text) of the one tool call the upstream answers with. */
let args = `{"command":"rm -rf /","x":${nested}}`;
/** Set: Anthropic's whole answer and Gemini's hold a denied call and, beside it, a call nested DEPTH levels deep. */
let beside = false;

function anthropicAnswer(stream: boolean, res: http.ServerResponse): void {
  const usage = '"usage":{"input_tokens":5,"output_tokens":7}';
  if (!stream) {
    const content = beside
      ? `{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"rm -rf /"}},{"type":"tool_use","id":"toolu_2","name":"Read","input":{"file_path":${nested}}}`
      : `{"type":"tool_use","id":"toolu_1","name":"Bash","input":${args}}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[${content}],"stop_reason":"tool_use","stop_sequence":null,${usage}}`,
    );
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const ev = (e: string, d: string): void => void res.write(`event: ${e}\ndata: ${d}\n\n`);
  ev(
    'message_start',
    `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}`,
  );
  ev(
    'content_block_start',
    '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"Bash","input":{}}}',
  );
  ev(
    'content_block_delta',
    JSON.stringify({
      type: 'content_block_delta',
      index: 0,
      delta: { type: 'input_json_delta', partial_json: args },
    }),
  );
  ev('content_block_stop', '{"type":"content_block_stop","index":0}');
  ev(
    'message_delta',
    '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}',
  );
  ev('message_stop', '{"type":"message_stop"}');
  res.end();
}

function chatAnswer(stream: boolean, res: http.ServerResponse): void {
  const call = `{"id":"call_1","type":"function","function":{"name":"Bash","arguments":${JSON.stringify(args)}}}`;
  const usage = '"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}';
  if (!stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-5","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[${call}]},"finish_reason":"tool_calls"}],${usage}}`,
    );
    return;
  }
  const chunk = (rest: string): void =>
    void res.write(
      `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-5",${rest}}\n\n`,
    );
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  chunk(
    `"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,${call.slice(1)}]},"finish_reason":null}]`,
  );
  chunk('"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]');
  chunk(`"choices":[],${usage}`);
  res.end('data: [DONE]\n\n');
}

function responsesAnswer(res: http.ServerResponse): void {
  const item = `{"type":"function_call","id":"fc_1","call_id":"call_1","name":"Bash","arguments":${JSON.stringify(args)},"status":"completed"}`;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    `{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"gpt-5","output":[${item}],"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12}}`,
  );
}

/** Gemini: with `beside`, a denied call and, beside it, one whose arguments nest DEPTH levels deep. */
function geminiAnswer(stream: boolean, res: http.ServerResponse): void {
  const parts = beside
    ? `[{"functionCall":{"name":"Bash","args":{"command":"rm -rf /"}}},{"functionCall":{"name":"Read","args":{"file_path":${nested}}}}]`
    : '[{"text":"Hello."}]';
  const chunk = `{"candidates":[{"content":{"role":"model","parts":${parts}},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7,"totalTokenCount":12},"modelVersion":"gemini-2.5-pro"}`;
  res.writeHead(200, { 'content-type': stream ? 'text/event-stream' : 'application/json' });
  res.end(stream ? `data: ${chunk}\r\n\r\n` : chunk);
}

const CASES = [
  { api: 'messages', stream: false },
  { api: 'messages', stream: true },
  { api: 'chat', stream: false },
  { api: 'chat', stream: true },
  { api: 'responses', stream: false },
] as const;
type Case = (typeof CASES)[number];

describe('tool-call arguments a model nests 10,000 levels deep', function () {
  this.timeout(30_000);
  let upstream: Listening;
  let tb: TestBridge;
  let key: string;
  let records = 0;

  before(async () => {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
        if (/:(stream)?generateContent/i.test(req.url ?? ''))
          geminiAnswer(req.url!.includes(':streamGenerateContent'), res);
        else if (req.url?.includes('/messages')) anthropicAnswer(stream, res);
        else if (req.url?.includes('/chat/')) chatAnswer(stream, res);
        else responsesAnswer(res);
      });
    });
    upstream = await listenOnLoopback(server);
    tb = await startBridge(upstream.origin, {
      AIBRIDGE_OPENAI_BASE_URL: `${upstream.origin}/v1`,
      AIBRIDGE_GEMINI_BASE_URL: upstream.origin,
      AIBRIDGE_GEMINI_API_KEY: 'gemini-upstream-key',
    });
    key = (await tb.addUser('deep-args@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await upstream?.stop();
  });

  async function ask({ api, stream }: Case): Promise<{ status: number; text: string }> {
    const route =
      api === 'messages'
        ? '/anthropic/v1/messages'
        : api === 'chat'
          ? '/openai/v1/chat/completions'
          : '/openai/v1/responses';
    const body =
      api === 'messages'
        ? { model: 'claude-sonnet-4-5', max_tokens: 64, stream, messages: [{ role: 'user', content: 'go' }] }
        : api === 'chat'
          ? { model: 'gpt-5', stream, messages: [{ role: 'user', content: 'go' }] }
          : { model: 'gpt-5', stream, input: 'go' };
    const res = await fetch(tb.url + route, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify(body),
    });
    return { status: res.status, text: await res.text() };
  }

  async function newest(): Promise<Interception> {
    const items = await tb.interceptions(++records);
    assert.equal(items.length, records, 'the request has its record');
    return items[0]!;
  }

  it('are recorded, with their usage, and kept down to 128 levels', async () => {
    for (const c of CASES) {
      const res = await ask(c);
      assert.equal(res.status, 200, `${c.api} ${c.stream}: ${res.text.slice(0, 200)}`);
      const rec = await newest();
      assert.equal(rec.usage.output, 7, `${c.api} ${c.stream}: usage`);
      const input = rec.toolCalls[0]?.input as { command: string; x: unknown };
      assert.equal(input.command, 'rm -rf /');
      // The arguments object is level 1, `x` level 2: VALUE_DEPTH - 1 arrays are kept, then the marker.
      let v: unknown = input.x;
      for (let level = 2; level <= VALUE_DEPTH; level++) {
        assert.ok(Array.isArray(v), `${c.api} ${c.stream}: level ${level} kept`);
        v = (v as unknown[])[0];
      }
      assert.equal(v, NESTED_TOO_DEEP, `${c.api} ${c.stream}`);
    }
  });

  it('cannot step around a deny rule with an argument pattern', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    for (const c of CASES) {
      const res = await ask(c);
      assert.equal(res.status, 200, `${c.api} ${c.stream}: ${res.text.slice(0, 200)}`);
      assert.match(res.text, /AI Bridge blocked Bash: rm -rf \/ \(rule rm-root\)/, `${c.api} ${c.stream}`);
      assert.doesNotMatch(res.text, /\[\[\[\[/, `${c.api} ${c.stream}: the call is not relayed`);
      const rec = await newest();
      assert.deepEqual(rec.toolCalls[0]?.policy, { rule: 'rm-root', action: 'deny' });
    }
  });

  it('denied by the tool name alone, an array of arguments with no text to show is blocked', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'no-bash', tool: 'Bash', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    args = nested;
    try {
      for (const c of CASES.filter((x) => x.api !== 'messages')) {
        const res = await ask(c);
        assert.equal(res.status, 200, `${c.api} ${c.stream}: ${res.text.slice(0, 200)}`);
        assert.match(res.text, /AI Bridge blocked Bash: .*\(rule no-bash\)/, `${c.api} ${c.stream}`);
        assert.doesNotMatch(res.text, /\[\[\[\[/, `${c.api} ${c.stream}: the call is not relayed`);
        const rec = await newest();
        assert.deepEqual(rec.toolCalls[0]?.policy, { rule: 'no-bash', action: 'deny' });
      }
    } finally {
      args = `{"command":"rm -rf /","x":${nested}}`;
    }
  });

  it('a denied call beside one nested too deep to rewrite: the whole answer fails, but is recorded with its usage', async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    beside = true;
    try {
      const gemini = (): Promise<Response> =>
        fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-pro:generateContent`, {
          method: 'POST',
          headers: { 'x-goog-api-key': key, 'content-type': 'application/json' },
          body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'go' }] }] }),
        });
      for (const [name, send] of [
        ['messages', () => ask({ api: 'messages', stream: false })],
        ['gemini', gemini],
      ] as const) {
        assert.equal((await send()).status, 500, name);
        const rec = await newest();
        assert.equal(rec.status, 'error', name);
        assert.equal(rec.error?.type, 'internal_error', name);
        assert.equal(rec.usage.output, 7, `${name}: the provider's usage is on the record`);
      }
    } finally {
      beside = false;
    }
  });

  it("streams whose denied call cannot be rewritten are the bridge's failure: the provider's breaker stays closed for everyone", async () => {
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [{ id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
    });
    assert.equal(put.status, 200);
    const stream = (k: string): Promise<Response> =>
      fetch(`${tb.url}/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse`, {
        method: 'POST',
        headers: { 'x-goog-api-key': k, 'content-type': 'application/json' },
        body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'go' }] }] }),
      });
    beside = true;
    try {
      // More than AIBRIDGE_BREAKER_THRESHOLD (5) in a row.
      for (let i = 0; i < 6; i++) {
        const res = await stream(key);
        const body = await res.text();
        assert.match(body, /internal_error/, `${res.status} ${body.slice(0, 300)}`);
        const rec = await newest();
        assert.equal(rec.error?.type, 'internal_error');
      }
    } finally {
      beside = false;
    }
    const other = await tb.addUser('deep-args-other@example.com');
    const res = await stream(other.key);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.match(text, /Hello\./);
    await newest();
  });
});

describe('an injected MCP tool called with arguments nested 10,000 levels deep', function () {
  this.timeout(30_000);
  let upstream: Listening;
  let tb: TestBridge;
  let key: string;
  let calls = 0;

  before(async () => {
    // The first round calls the bridge's echo tool with the deep arguments; any later one ends the turn.
    upstream = await listenOnLoopback(
      http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          calls++;
          const first = calls === 1;
          const content = first
            ? `{"type":"tool_use","id":"toolu_1","name":"aibridge__everything__echo","input":{"message":"hi","x":${nested}}}`
            : '{"type":"text","text":"done"}';
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[${content}],"stop_reason":"${first ? 'tool_use' : 'end_turn'}","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":7}}`,
          );
        });
      }),
    );
    const dir = await tempDir();
    await fs.writeFile(
      path.join(dir, 'mcp-servers.json'),
      JSON.stringify({ servers: { everything: everythingStdio({ tools: { allow: ['echo'] } }) } }),
    );
    tb = await startBridge(upstream.origin, { AIBRIDGE_MCP_CONNECT_TIMEOUT_MS: '5000' }, dir);
    await tb.bridge.mcp.ready();
    key = (await tb.addUser('deep-injected@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await upstream?.stop();
  });

  it('fails the request, but the round the provider answered is recorded with its usage', async () => {
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'go' }],
      }),
    });
    assert.equal(res.status, 500, await res.text());
    const [rec] = await tb.interceptions(1, key);
    assert.ok(rec, 'the round has its record');
    assert.equal(rec.status, 'error');
    assert.equal(rec.error?.type, 'internal_error');
    assert.equal(rec.usage.output, 7);
  });
});
