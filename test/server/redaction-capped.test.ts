import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type { GatewayToolCall } from '../../shared/interception';
import type { AnthropicMock } from '../helpers/anthropic-mock';
import { startMockedBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { InProcessMcpServer, startEverythingHttp } from '../helpers/mcp-servers';

/** A `.env` file over a record's cap: its lines must be redacted before the record keeps its start. */
const SECRET = 'hunter2-Zq8vW3xPp9';
const ENV_FILE = `# settings\nDB_PASSWORD=${SECRET}\nAWS_SECRET_ACCESS_KEY=${'k'.repeat(20)}${SECRET}\n${'# filler line\n'.repeat(6000)}`;

describe('redaction of values over a record cap (capture full messages, MCP gateway arguments)', function () {
  this.timeout(60_000);
  let web: { url: string; stop(): Promise<void> };
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    web = await startEverythingHttp();
    ({ tb, close } = await startMockedBridge({
      AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
    }));
    await tb.api('PUT', '/api/v1/teams/forensics/capture', tb.adminKey, { level: 'full' });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/web', tb.adminKey, {
      transport: { type: 'http', url: web.url },
      tools: { allow: ['echo'] },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await close();
    await web.stop();
  });

  it('a conversation over 64 KiB keeps the start of its messages with the .env secrets redacted', async () => {
    const dev = await tb.addUser('capped-full@example.com', { team: 'forensics' });
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dev.key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        messages: [{ role: 'user', content: `Here is my .env, fix it:\n${ENV_FILE}` }],
      }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.ok(!rec.prompt?.includes(SECRET), 'the prompt is redacted');
    const messages = JSON.stringify(rec.messages);
    assert.ok(messages.includes('truncated'), 'the messages are over the cap');
    assert.ok(!messages.includes(SECRET), `the messages kept a secret in clear: ${messages.slice(0, 200)}`);
    assert.ok(messages.includes('[REDACTED:env_secret]'));
  });

  it('an MCP gateway call with arguments over 8 KiB keeps their start with the .env secrets redacted', async () => {
    const dev = await tb.addUser('capped-gw@example.com', { team: 'forensics' });
    const client = new Client({ name: 'test-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${dev.key}` } },
      }),
    );
    try {
      await client.callTool({ name: 'web__echo', arguments: { message: ENV_FILE } });
    } finally {
      await client.close();
    }
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: (GatewayToolCall & { via: string })[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        dev.key,
      );
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    const input = JSON.stringify(calls[0]!.input);
    assert.ok(input.includes('truncated'), 'the arguments are over the cap');
    assert.ok(!input.includes(SECRET), `the call record kept a secret in clear: ${input.slice(0, 200)}`);
    assert.ok(input.includes('[REDACTED:env_secret]'));
  });
});

describe('redaction of a provider error that echoes what the member sent', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    ({ tb, upstream, close } = await startMockedBridge());
  });
  after(() => close());

  it('a key pasted as the model name, echoed in the 404, is not kept in the record, its error or the log', async () => {
    const dev = await tb.addUser('echoed-model@example.com');
    const key = `sk-ant-api03-${'Ab3dE'.repeat(10)}`;
    upstream.next({ kind: 'error', status: 404, type: 'not_found_error', message: `model: ${key}` });
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dev.key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({ model: key, max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(res.status, 404);
    await res.text();
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.model, '[REDACTED:anthropic_key]');
    assert.ok(!JSON.stringify(rec).includes(key), `the record kept the key: ${JSON.stringify(rec.error)}`);
    assert.equal(rec.error?.message, 'model: [REDACTED:anthropic_key]');
    assert.ok(!tb.logs.some((l) => l.includes(key)), 'a log line kept the key');
  });

  it('an error echoing a large request keeps 8 KiB of its message, a key across the cut redacted', async () => {
    const dev = await tb.addUser('echoed-large@example.com');
    const key = `sk-ant-api03-${'Qw4'.repeat(20)}`;
    // An upstream that echoes the whole input in a 400 (as validation errors of OpenAI-compatible servers do).
    const message = `invalid input: ${'y'.repeat(8 * 1024 - 30)} ${key} ${'z'.repeat(200_000)}`;
    upstream.next({ kind: 'error', status: 400, type: 'invalid_request_error', message });
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dev.key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    assert.equal(res.status, 400);
    assert.equal(
      ((await res.json()) as { error: { message: string } }).error.message,
      message,
      'the client gets it whole',
    );
    const [rec] = await tb.interceptions(1, dev.key);
    const kept = rec?.error?.message ?? '';
    assert.ok(kept.startsWith('invalid input: yyy'), kept.slice(0, 40));
    assert.ok(kept.length <= 8 * 1024, `kept ${kept.length} characters`);
    assert.ok(!kept.includes(key.slice(0, 15)), `kept: ${kept.slice(-40)}`);
  });
});

describe('redaction of an MCP server error kept in a gateway call record', function () {
  this.timeout(60_000);
  let mcp: InProcessMcpServer;
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    mcp = await new InProcessMcpServer('db', (server) => {
      server.setRequestHandler(ListToolsRequestSchema, async () => ({
        tools: [{ name: 'query', inputSchema: { type: 'object' as const, properties: {} } }],
      }));
      server.setRequestHandler(CallToolRequestSchema, async () => {
        throw new McpError(
          ErrorCode.InvalidParams,
          'cannot connect to postgres://svc:hunter2pw@10.1.2.3:5432/app',
        );
      });
    }).start();
    ({ tb, close } = await startMockedBridge({
      AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
    }));
    const put = await tb.api('PUT', '/api/v1/mcp/servers/db', tb.adminKey, {
      transport: { type: 'http', url: mcp.url },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await close();
    await mcp.stop();
  });

  it("the server's JSON-RPC error is stored and exported with its password redacted", async () => {
    const dev = await tb.addUser('gw-error@example.com');
    const client = new Client({ name: 'test-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${dev.key}` } },
      }),
    );
    try {
      await assert.rejects(client.callTool({ name: 'db__query', arguments: {} }));
    } finally {
      await client.close();
    }
    const calls = await eventually(async () => {
      const r = await tb.api<{ items: GatewayToolCall[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        tb.adminKey,
      );
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    assert.equal(calls[0]!.outcome, 'error');
    assert.ok(calls[0]!.error?.includes('[REDACTED:url_password]'), String(calls[0]!.error));
    const csv = await (
      await fetch(`${tb.url}/api/v1/audit/export?kind=gateway-calls&format=csv`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      })
    ).text();
    assert.ok(!csv.includes('hunter2pw'), csv);
  });
});

describe('redaction behind JSON string escapes', function () {
  this.timeout(60_000);
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    ({ tb, close } = await startMockedBridge());
    await tb.api('PUT', '/api/v1/teams/forensics/capture', tb.adminKey, { level: 'full' });
  });
  after(() => close());

  it('a tool result that is JSON (escaped newlines, \\/ in URLs, \\u escapes) keeps no secret in clear', async () => {
    const dev = await tb.addUser('escaped@example.com', { team: 'forensics' });
    // What a tool answering JSON sends back: a file's text as a JSON string, PHP-style \/ escapes.
    const result =
      '{"path":".env","content":"# app\\nDB_PASSWORD=hunter2secret\\nDATABASE_URL=postgres:\\/\\/app:pgsecret99@db:5432\\/app\\nKEY=sk\\u002dant-api03-' +
      'Q'.repeat(30) +
      '\\n"}';
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dev.key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        messages: [
          { role: 'user', content: 'read .env' },
          {
            role: 'assistant',
            content: [{ type: 'tool_use', id: 'toolu_1', name: 'read', input: { path: '.env' } }],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: result }] },
            ],
          },
        ],
      }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    const content = rec.toolResults?.[0]?.content ?? '';
    const all = JSON.stringify(rec);
    for (const secret of ['hunter2secret', 'pgsecret99', 'Q'.repeat(30)])
      assert.ok(!all.includes(secret), `${secret} kept in clear: ${content}`);
    // The rest of the text is kept as it was sent, escapes and all.
    assert.ok(
      content.startsWith('{"path":".env","content":"# app\\nDB_PASSWORD=[REDACTED:env_secret]\\n'),
      content,
    );
    assert.ok(content.includes('postgres:\\/\\/app:[REDACTED:url_password]@db'), content);
  });
});

describe('redaction of a tool result over the 16 KiB kept', function () {
  this.timeout(60_000);
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    ({ tb, close } = await startMockedBridge());
    await tb.api('PUT', '/api/v1/teams/forensics/capture', tb.adminKey, { level: 'full' });
  });
  after(() => close());

  it('a key across the cut keeps no part of itself in clear', async () => {
    const dev = await tb.addUser('cut-result@example.com', { team: 'forensics' });
    const key = `sk-ant-api03-${'Zk7'.repeat(20)}`;
    // The key starts 16 characters before the cut: what is kept of it is too short to be found.
    const result = `${'x'.repeat(16 * 1024 - 16)} ${key} more`;
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${dev.key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        messages: [
          { role: 'user', content: 'cat it' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_2', name: 'cat', input: {} }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_2', content: result }] },
        ],
      }),
    });
    assert.equal(res.status, 200);
    await res.text();
    const [rec] = await tb.interceptions(1, dev.key);
    const content = rec?.toolResults?.[0]?.content ?? '';
    assert.ok(content.length <= 16 * 1024);
    assert.ok(!content.includes(key.slice(0, 15)), `kept: ${content.slice(-40)}`);
  });
});

describe('redaction of model output over the 256 KiB kept', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    ({ tb, upstream, close } = await startMockedBridge());
    await tb.api('PUT', '/api/v1/teams/forensics/capture', tb.adminKey, { level: 'full' });
  });
  after(() => close());

  for (const stream of [false, true])
    it(`a key across the cut keeps no part of itself in clear${stream ? ', streamed' : ''}`, async () => {
      const dev = await tb.addUser(`cut-output-${stream}@example.com`, { team: 'forensics' });
      const key = `sk-ant-api03-${'Zk7'.repeat(20)}`;
      upstream.next({ kind: 'text', text: `${'y'.repeat(256 * 1024 - 16)} ${key} done` });
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${dev.key}`,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          stream,
          messages: [{ role: 'user', content: 'print it' }],
        }),
      });
      assert.equal(res.status, 200);
      await res.text();
      const [rec] = await tb.interceptions(1, dev.key);
      const text = rec?.output?.text ?? '';
      assert.equal(text.length, 256 * 1024);
      assert.ok(!text.includes(key.slice(0, 15)), `kept: ${text.slice(-40)}`);
    });
});
