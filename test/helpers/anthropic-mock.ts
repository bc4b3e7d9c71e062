import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import { type Listening, listenOnLoopback } from './loopback';

/** What the mock answers to one `POST /v1/messages`. */
export type Scenario =
  | {
      kind: 'text';
      text?: string;
      usage?: MockUsage;
      cumulativeDelta?: boolean;
      /** message_delta's usage with the counts it does not report as `null` (the API's schema allows it). */
      nullDelta?: boolean;
    }
  | { kind: 'tool'; name: string; input: Record<string, unknown>; text?: string; usage?: MockUsage }
  | { kind: 'error'; status: number; type: string; message: string; headers?: Record<string, string> }
  /** Streams message_start and one delta, then an `event: error` (as the API does when overloaded mid-stream). */
  | { kind: 'mid-stream-error'; type?: string; message?: string }
  /** Sends headers and the first event, then cuts the connection. */
  | { kind: 'reset' }
  /** Never answers. */
  | { kind: 'hang' }
  /** Streams text one event per `delayMs`, `count` events. */
  | { kind: 'drip'; count: number; delayMs: number }
  /**
   * Streams the first event, then waits until `release()` is called before finishing. `hiddenMs`:
   * a wait before that first event (the model thinking where the client sees nothing).
   */
  | { kind: 'gated'; gate: Promise<void>; hiddenMs?: number }
  /** A 200 in a format the bridge cannot read (as Google's `alt=proto` would be): `bytes` of binary. */
  | { kind: 'unreadable'; bytes: number };

export interface MockUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
  /** The writes by cache lifetime, as the API reports them beside the total. */
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  /** The provider's own tools run (web search), reported at the end of a stream too. */
  server_tool_use?: { web_search_requests: number };
  /** The thinking part of `output_tokens`, reported at the end of a stream (message_delta). */
  output_tokens_details?: { thinking_tokens: number };
}

export const DEFAULT_USAGE: MockUsage = {
  input_tokens: 25,
  output_tokens: 12,
  cache_read_input_tokens: 100,
  cache_creation_input_tokens: 7,
};

export const MOCK_TEXT = 'Hello from the upstream mock.';
export const UPSTREAM_KEY = 'sk-ant-upstream-test-key-0123456789';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Set when the client side of this request went away before the mock finished answering. */
  aborted: boolean;
}

function sse(res: http.ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

// Real time is the point here: the mock stalls, drips and cuts like a real upstream, for the bridge's own timers.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * An upstream that speaks the Anthropic Messages API's wire format: the SSE event names and order,
 * usage with cache fields, error bodies and headers. Tests queue scenarios; the rest get `text`.
 */
export class AnthropicMock {
  readonly requests: SeenRequest[] = [];
  private readonly queue: Scenario[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;
  url = '';
  /** The model every answer names, whatever the request asked for (a deployment or alias answered as the model it runs). */
  answerModel: string | undefined;
  /** When set, token counts are answered only once it resolves (a passthrough held at the upstream). */
  countTokensGate: Promise<void> | undefined;

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = `${this.listening.origin}`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  next(...scenarios: Scenario[]): void {
    this.queue.push(...scenarios);
  }

  /** Drops scenarios no request consumed. */
  clear(): void {
    this.queue.length = 0;
  }

  /** Requests that reached the model endpoint. */
  messageRequests(): SeenRequest[] {
    return this.requests.filter((r) => r.method === 'POST' && r.url.split('?')[0] === '/v1/messages');
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
      aborted: false,
    };
    this.requests.push(seen);
    res.on('close', () => {
      if (!res.writableFinished) seen.aborted = true;
    });
    const requestId = `req_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
    res.setHeader('request-id', requestId);
    const path = seen.url.split('?')[0];

    // The key as `x-api-key`, or as `Authorization: Bearer` (how @anthropic-ai/sdk ≥ 1.13 sends `apiKey`).
    if (req.headers['x-api-key'] !== UPSTREAM_KEY && req.headers.authorization !== `Bearer ${UPSTREAM_KEY}`) {
      return this.error(res, 401, 'authentication_error', 'invalid x-api-key', requestId);
    }
    if (req.method === 'GET' && path === '/v1/models') {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          data: [
            {
              type: 'model',
              id: 'claude-sonnet-4-6',
              display_name: 'Claude Sonnet 4.6',
              created_at: '2025-09-29T00:00:00Z',
            },
          ],
          has_more: false,
          first_id: 'claude-sonnet-4-6',
          last_id: 'claude-sonnet-4-6',
        }),
      );
      return;
    }
    if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
      res.setHeader('content-type', 'application/json');
      const answer = (): void => {
        res.end(JSON.stringify({ input_tokens: 42 }));
      };
      if (this.countTokensGate) void this.countTokensGate.then(answer);
      else answer();
      return;
    }
    if (req.method === 'POST' && path === '/v1/messages') {
      let body: { model?: string; stream?: boolean };
      try {
        body = JSON.parse(seen.body);
      } catch {
        return this.error(
          res,
          400,
          'invalid_request_error',
          'There was an issue with the format of your request',
          requestId,
        );
      }
      const scenario = this.queue.shift() ?? { kind: 'text' };
      return this.messages(
        res,
        scenario,
        this.answerModel ?? body.model ?? 'claude-sonnet-4-6',
        body.stream === true,
        requestId,
      );
    }
    // Anything else: echo what arrived, so pass-through tests can see it.
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-mock-echo', '1');
    res.end(JSON.stringify({ method: req.method, url: seen.url }));
  }

  private error(
    res: http.ServerResponse,
    status: number,
    type: string,
    message: string,
    requestId: string,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ type: 'error', error: { type, message }, request_id: requestId }));
  }

  private async messages(
    res: http.ServerResponse,
    s: Scenario,
    model: string,
    stream: boolean,
    requestId: string,
  ): Promise<void> {
    const id = `msg_${randomUUID().replaceAll('-', '').slice(0, 24)}`;
    if (s.kind === 'error') return this.error(res, s.status, s.type, s.message, requestId, s.headers);
    if (s.kind === 'hang') return;
    if (s.kind === 'unreadable') {
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'request-id': requestId });
      res.end(Buffer.alloc(s.bytes, 0xab));
      return;
    }
    const usage = ('usage' in s && s.usage) || DEFAULT_USAGE;

    if (!stream) {
      if (s.kind !== 'text' && s.kind !== 'tool') {
        // Stream-only faults have no JSON form; answer plainly.
        return this.error(res, 500, 'api_error', 'Internal server error', requestId);
      }
      const content: unknown[] = [];
      if (s.kind === 'tool') {
        if (s.text) content.push({ type: 'text', text: s.text });
        content.push({ type: 'tool_use', id: `toolu_${id.slice(4)}`, name: s.name, input: s.input });
      } else {
        content.push({ type: 'text', text: s.text ?? MOCK_TEXT });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          type: 'message',
          role: 'assistant',
          model,
          content,
          stop_reason: s.kind === 'tool' ? 'tool_use' : 'end_turn',
          stop_sequence: null,
          usage: { ...usage, service_tier: 'standard' },
        }),
      );
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    sse(res, 'message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: {
          input_tokens: usage.input_tokens,
          cache_creation_input_tokens: usage.cache_creation_input_tokens,
          cache_read_input_tokens: usage.cache_read_input_tokens,
          ...(usage.cache_creation ? { cache_creation: usage.cache_creation } : {}),
          output_tokens: 1,
          service_tier: 'standard',
        },
      },
    });
    if (s.kind === 'reset') {
      await sleep(20);
      res.socket?.destroy();
      return;
    }
    let index = 0;
    const textBlock = async (parts: string[], delayMs = 0): Promise<void> => {
      sse(res, 'content_block_start', {
        type: 'content_block_start',
        index,
        content_block: { type: 'text', text: '' },
      });
      if (index === 0) sse(res, 'ping', { type: 'ping' });
      for (const p of parts) {
        if (delayMs) await sleep(delayMs);
        if (res.destroyed) return;
        sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'text_delta', text: p },
        });
      }
      sse(res, 'content_block_stop', { type: 'content_block_stop', index });
      index++;
    };

    switch (s.kind) {
      case 'mid-stream-error':
        sse(res, 'content_block_start', {
          type: 'content_block_start',
          index: 0,
          content_block: { type: 'text', text: '' },
        });
        sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'text_delta', text: 'Partial' },
        });
        sse(res, 'error', {
          type: 'error',
          error: { type: s.type ?? 'overloaded_error', message: s.message ?? 'Overloaded' },
        });
        res.end();
        return;
      case 'drip':
        await textBlock(
          Array.from({ length: s.count }, (_, i) => `${i} `),
          s.delayMs,
        );
        break;
      case 'gated':
        if (s.hiddenMs) await new Promise((r) => setTimeout(r, s.hiddenMs));
        await textBlock(['first ']);
        await s.gate;
        await textBlock(['second']);
        break;
      case 'tool': {
        if (s.text) await textBlock([s.text]);
        const json = JSON.stringify(s.input);
        const mid = Math.floor(json.length / 2);
        sse(res, 'content_block_start', {
          type: 'content_block_start',
          index,
          content_block: { type: 'tool_use', id: `toolu_${id.slice(4)}`, name: s.name, input: {} },
        });
        sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: '' },
        });
        sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: json.slice(0, mid) },
        });
        sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: json.slice(mid) },
        });
        sse(res, 'content_block_stop', { type: 'content_block_stop', index });
        break;
      }
      case 'text': {
        const text = s.text ?? MOCK_TEXT;
        const mid = Math.floor(text.length / 2);
        await textBlock([text.slice(0, mid), text.slice(mid)]);
        break;
      }
    }
    if (res.destroyed) return;
    const cumulative = s.kind === 'text' && s.cumulativeDelta;
    sse(res, 'message_delta', {
      type: 'message_delta',
      delta: { stop_reason: s.kind === 'tool' ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: cumulative
        ? { ...usage }
        : s.kind === 'text' && s.nullDelta
          ? {
              input_tokens: null,
              cache_creation_input_tokens: null,
              cache_read_input_tokens: null,
              output_tokens: usage.output_tokens,
              server_tool_use: null,
            }
          : {
              output_tokens: usage.output_tokens,
              ...(usage.server_tool_use ? { server_tool_use: usage.server_tool_use } : {}),
              ...(usage.output_tokens_details ? { output_tokens_details: usage.output_tokens_details } : {}),
            },
    });
    sse(res, 'message_stop', { type: 'message_stop' });
    res.end();
  }
}
