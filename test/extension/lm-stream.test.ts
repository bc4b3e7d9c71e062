import assert from 'node:assert/strict';
import http from 'node:http';
import { ChatRequestError, type StreamedPart, streamChat } from '../../extension/lm/lm-stream';
import {
  anthropicRequest,
  type ChatMessage,
  conversationSessionId,
  estimateTokens,
} from '../../extension/lm/lm-wire';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { freePort, listenOnLoopback } from '../helpers/loopback';

const MODEL = 'claude-sonnet-4-5';
const TOOLS = [
  {
    name: 'get_weather',
    description: 'The weather in a city',
    inputSchema: { type: 'object', properties: { city: { type: 'string' } } },
  },
];

describe("extension: AI Bridge models in VS Code's chat (conversion and streaming, no vscode)", function () {
  this.timeout(30_000);

  describe('conversion to the Messages API', () => {
    it('text, tool calls, tool results (first in their turn) and images; turns of one role merged', () => {
      const messages: ChatMessage[] = [
        { role: 'user', parts: [{ kind: 'text', text: 'Weather in Paris?' }] },
        {
          role: 'assistant',
          parts: [
            { kind: 'text', text: 'Let me look.' },
            { kind: 'toolCall', callId: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
          ],
        },
        {
          role: 'user',
          parts: [
            { kind: 'text', text: 'and here is a picture' },
            { kind: 'toolResult', callId: 'toolu_1', text: 'Sunny, 21°C' },
          ],
        },
        { role: 'user', parts: [{ kind: 'image', mimeType: 'image/png', data: new Uint8Array([1, 2, 3]) }] },
        { role: 'user', parts: [{ kind: 'image', mimeType: 'application/pdf', data: new Uint8Array([1]) }] },
        { role: 'user', parts: [{ kind: 'text', text: '' }] },
      ];
      const body = anthropicRequest(MODEL, messages, TOOLS, 4096);
      assert.deepEqual(body, {
        model: MODEL,
        max_tokens: 4096,
        stream: true,
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
          {
            role: 'assistant',
            content: [
              { type: 'text', text: 'Let me look.' },
              { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_1', content: 'Sunny, 21°C' },
              { type: 'text', text: 'and here is a picture' },
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AQID' } },
              { type: 'text', text: '[an attachment of type application/pdf was left out]' },
            ],
          },
        ],
        tools: [
          {
            name: 'get_weather',
            description: 'The weather in a city',
            input_schema: { type: 'object', properties: { city: { type: 'string' } } },
          },
        ],
      });
    });

    it('one session per conversation; tokens estimated', () => {
      const a: ChatMessage[] = [{ role: 'user', parts: [{ kind: 'text', text: 'first' }] }];
      const a2: ChatMessage[] = [...a, { role: 'assistant', parts: [{ kind: 'text', text: 'ok' }] }];
      const b: ChatMessage[] = [{ role: 'user', parts: [{ kind: 'text', text: 'other' }] }];
      assert.equal(conversationSessionId(a), conversationSessionId(a2));
      assert.notEqual(conversationSessionId(a), conversationSessionId(b));
      assert.match(conversationSessionId(a), /^vscode-chat-[0-9a-f]{32}$/);
      assert.equal(estimateTokens('12345678'), 2);
      assert.equal(estimateTokens(a[0]!), 2);
    });
  });

  describe('through the real bridge', () => {
    let mock: AnthropicMock;
    let tb: TestBridge;
    before(async () => {
      mock = await new AnthropicMock().start();
      tb = await startBridge(mock.url);
    });
    after(async () => {
      await tb.close();
      await mock.stop();
    });

    it('streams text; recorded as vscode-chat with the conversation session and the typed prompt', async () => {
      const dev = await tb.addUser('chat-user@example.com', { team: 'ide' });
      const messages: ChatMessage[] = [{ role: 'user', parts: [{ kind: 'text', text: 'Say hello' }] }];
      const parts: StreamedPart[] = [];
      await streamChat({
        url: tb.url,
        key: dev.key,
        sessionId: conversationSessionId(messages),
        body: anthropicRequest(MODEL, messages, [], 1024),
        onPart: (p) => parts.push(p),
      });
      assert.equal(parts.map((p) => (p.kind === 'text' ? p.text : '')).join(''), MOCK_TEXT);
      const [rec] = await tb.interceptions(1, dev.key);
      assert.equal(rec!.client, 'vscode-chat');
      assert.equal(rec!.sessionId, conversationSessionId(messages));
      assert.equal(rec!.prompt, 'Say hello');
      assert.equal(rec!.userEmail, 'chat-user@example.com');
      assert.equal(rec!.status, 'ok');
      // The bridge's own headers stay at the bridge.
      assert.equal(mock.messageRequests().at(-1)!.headers['x-aibridge-session-id'], undefined);
    });

    it('a tool call arrives whole, and its result goes back as a tool_result', async () => {
      const dev = await tb.addUser('chat-tools@example.com', { team: 'ide' });
      mock.next({ kind: 'tool', name: 'get_weather', input: { city: 'Paris' } });
      const messages: ChatMessage[] = [
        { role: 'user', parts: [{ kind: 'text', text: 'Weather in Paris?' }] },
      ];
      const parts: StreamedPart[] = [];
      const session = conversationSessionId(messages);
      await streamChat({
        url: tb.url,
        key: dev.key,
        sessionId: session,
        body: anthropicRequest(MODEL, messages, TOOLS, 1024),
        onPart: (p) => parts.push(p),
      });
      const call = parts.find((p) => p.kind === 'toolCall');
      assert.ok(call && call.kind === 'toolCall', JSON.stringify(parts));
      assert.equal(call.name, 'get_weather');
      assert.deepEqual(call.input, { city: 'Paris' });

      messages.push(
        { role: 'assistant', parts: [call] },
        { role: 'user', parts: [{ kind: 'toolResult', callId: call.callId, text: 'Sunny' }] },
      );
      await streamChat({
        url: tb.url,
        key: dev.key,
        sessionId: conversationSessionId(messages),
        body: anthropicRequest(MODEL, messages, TOOLS, 1024),
        onPart: () => {},
      });
      const sent = JSON.parse(String(mock.messageRequests().at(-1)!.body)) as {
        messages: { role: string; content: { type: string; tool_use_id?: string }[] }[];
      };
      assert.deepEqual(sent.messages.at(-1)!.content[0], {
        type: 'tool_result',
        tool_use_id: call.callId,
        content: 'Sunny',
      });
      const recs = await tb.interceptions(2, dev.key);
      assert.ok(recs.every((r) => r.sessionId === session && r.client === 'vscode-chat'));
    });

    it("refusals carry the bridge's (or provider's) message", async () => {
      const body = anthropicRequest(MODEL, [{ role: 'user', parts: [{ kind: 'text', text: 'hi' }] }], [], 64);
      const bad = streamChat({ url: tb.url, key: 'aib_not_a_key', sessionId: 's', body, onPart: () => {} });
      await assert.rejects(bad, (e: unknown) => {
        assert.ok(e instanceof ChatRequestError);
        assert.equal(e.status, 401);
        assert.ok(e.code !== undefined && e.message.length > 10, e.message);
        return true;
      });
      const dev = await tb.addUser('chat-refused@example.com', { team: 'ide' });
      mock.next({ kind: 'error', status: 429, type: 'rate_limit_error', message: 'Slow down, please.' });
      await assert.rejects(
        streamChat({ url: tb.url, key: dev.key, sessionId: 's', body, onPart: () => {} }),
        (e: unknown) =>
          e instanceof ChatRequestError && e.status === 429 && e.message === 'Slow down, please.',
      );
    });

    it('cancelling aborts the upstream request, recorded as client_aborted', async () => {
      const dev = await tb.addUser('chat-cancel@example.com', { team: 'ide' });
      mock.next({ kind: 'drip', count: 100, delayMs: 50 });
      const ac = new AbortController();
      const parts: StreamedPart[] = [];
      const done = streamChat({
        url: tb.url,
        key: dev.key,
        sessionId: 'cancel-me',
        body: anthropicRequest(MODEL, [{ role: 'user', parts: [{ kind: 'text', text: 'long' }] }], [], 64),
        signal: ac.signal,
        onPart: (p) => {
          parts.push(p);
          ac.abort();
        },
      });
      await assert.rejects(done, (e: unknown) => (e as Error).name === 'AbortError');
      assert.ok(parts.length >= 1 && parts.length < 100);
      const [rec] = await tb.interceptions(1, dev.key);
      assert.equal(rec!.status, 'client_aborted');
      assert.equal(rec!.client, 'vscode-chat');
    });
  });
  describe('when the bridge is unreachable or goes away', () => {
    const body = anthropicRequest(MODEL, [{ role: 'user', parts: [{ kind: 'text', text: 'hi' }] }], [], 64);
    /** A stand-in for a bridge that starts an answer, then dies (`cut`) or ends the response early. */
    async function halfAnswer(end: 'cut' | 'end') {
      const server = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(
          'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n' +
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Half an"}}\n\n',
        );
        setTimeout(() => (end === 'cut' ? res.socket?.destroy() : res.end()), 30);
      });
      return listenOnLoopback(server);
    }

    it("names the bridge and the network's code instead of fetch's bare 'fetch failed'", async () => {
      const url = `http://127.0.0.1:${await freePort()}`;
      await assert.rejects(
        streamChat({ url, key: 'aib_x', sessionId: 's', body, onPart: () => {} }),
        (e: unknown) => {
          assert.ok(e instanceof ChatRequestError, String(e));
          assert.equal(e.status, 0);
          assert.equal(e.message, `Cannot reach the bridge at ${url} (ECONNREFUSED).`);
          return true;
        },
      );
    });

    it('a connection cut mid-answer, or an answer ended before message_stop, is an error, not a whole answer', async () => {
      for (const end of ['cut', 'end'] as const) {
        const bridge = await halfAnswer(end);
        const parts: StreamedPart[] = [];
        try {
          await assert.rejects(
            streamChat({
              url: bridge.origin,
              key: 'aib_x',
              sessionId: 's',
              body,
              onPart: (p) => parts.push(p),
            }),
            (e: unknown) => {
              assert.ok(e instanceof ChatRequestError, `${end}: ${String(e)}`);
              assert.match(
                e.message,
                end === 'cut' ? /^The connection to the bridge broke while the model answered \(/ : /cut off/,
              );
              return true;
            },
          );
          assert.deepEqual(parts, [{ kind: 'text', text: 'Half an' }]);
        } finally {
          await bridge.stop();
        }
      }
    });
  });
});
