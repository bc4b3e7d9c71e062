import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import { type Listening, listenOnLoopback } from './loopback';

export type OpenAIScenario =
  /** `omitUsage`: a compatible server that ignores `stream_options.include_usage` (sends no usage chunk). */
  /** `lingerMs` (Responses, streamed): the connection stays open that long after `response.completed`. */
  | { kind: 'text'; text?: string; usage?: MockOpenAIUsage; omitUsage?: boolean; lingerMs?: number }
  | { kind: 'tool'; name: string; arguments: Record<string, unknown>; usage?: MockOpenAIUsage }
  /** Responses only: a `custom_tool_call`, `local_shell_call` and `mcp_call` in one answer. */
  | { kind: 'mixed-tools' }
  /** Responses: two web searches and a file search run by the provider, then the answer. */
  | { kind: 'hosted-searches' }
  | {
      kind: 'error';
      status: number;
      type: string;
      code: string | null;
      message: string;
      headers?: Record<string, string>;
    }
  | { kind: 'mid-stream-error' }
  | { kind: 'reset' }
  | { kind: 'hang' }
  /** `lingerMs` (Responses): as `text`'s. */
  | { kind: 'drip'; count: number; delayMs: number; lingerMs?: number }
  /** Chat Completions: streams `count` content chunks, then the connection breaks (no usage chunk). */
  | { kind: 'cut'; count: number };

/** Counts as the provider reports them: prompt/input totals include cached tokens. */
export interface MockOpenAIUsage {
  input: number;
  cached: number;
  output: number;
  reasoning: number;
  /** Audio in the prompt and the completion (audio models, `modalities: ["text", "audio"]`). */
  audioIn?: number;
  audioOut?: number;
}

export const OPENAI_USAGE: MockOpenAIUsage = { input: 130, cached: 100, output: 40, reasoning: 16 };
export const OPENAI_TEXT = 'Hello from the OpenAI mock.';
export const OPENAI_UPSTREAM_KEY = 'sk-proj-upstream-test-key-9876543210';

export interface SeenOpenAIRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  aborted: boolean;
}

// Real time is the point here: the mock stalls, drips and cuts like a real upstream, for the bridge's own timers.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function chatUsage(u: MockOpenAIUsage): Record<string, unknown> {
  return {
    prompt_tokens: u.input,
    completion_tokens: u.output,
    total_tokens: u.input + u.output,
    prompt_tokens_details: { cached_tokens: u.cached, audio_tokens: u.audioIn ?? 0 },
    completion_tokens_details: {
      reasoning_tokens: u.reasoning,
      audio_tokens: u.audioOut ?? 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function responsesUsage(u: MockOpenAIUsage): Record<string, unknown> {
  return {
    input_tokens: u.input,
    input_tokens_details: { cached_tokens: u.cached },
    output_tokens: u.output,
    output_tokens_details: { reasoning_tokens: u.reasoning },
    total_tokens: u.input + u.output,
  };
}

/**
 * An upstream that speaks OpenAI's Chat Completions and Responses wire formats: chunk objects,
 * `usage: null` on every chunk and a usage-only chunk when `include_usage` is set, `[DONE]`, the
 * Responses event names and sequence numbers, and OpenAI's error bodies.
 */
export class OpenAIMock {
  readonly requests: SeenOpenAIRequest[] = [];
  private readonly queue: OpenAIScenario[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;
  url = '';

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = `${this.listening.origin}/v1`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  /** The responses made with `store` (the default), by id, as `GET /v1/responses/:id` reads them back. */
  readonly storedResponses = new Map<string, Record<string, unknown>>();

  /** The tier answers say served them (`service_tier`): a project's default tier may be `priority`. */
  serviceTier = 'default';

  next(...scenarios: OpenAIScenario[]): void {
    this.queue.push(...scenarios);
  }

  /** Drops scenarios no request consumed. */
  clear(): void {
    this.queue.length = 0;
  }

  modelRequests(): SeenOpenAIRequest[] {
    return this.requests.filter(
      (r) => r.method === 'POST' && /^\/v1\/(chat\/completions|responses)$/.test(r.url.split('?')[0]!),
    );
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const seen: SeenOpenAIRequest = {
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
    res.setHeader('x-request-id', `req_${randomUUID().replaceAll('-', '')}`);
    res.setHeader('openai-processing-ms', '12');
    const path = seen.url.split('?')[0];
    if (req.headers.authorization !== `Bearer ${OPENAI_UPSTREAM_KEY}`) {
      return this.error(res, {
        kind: 'error',
        status: 401,
        type: 'invalid_request_error',
        code: 'invalid_api_key',
        message: 'Incorrect API key provided.',
      });
    }
    if (req.method === 'GET' && path === '/v1/models') {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          object: 'list',
          data: [{ id: 'gpt-5', object: 'model', created: 1754425777, owned_by: 'system' }],
        }),
      );
      return;
    }
    const storedId = /^\/v1\/responses\/(resp_[A-Za-z0-9]+)$/.exec(path ?? '')?.[1];
    if (req.method === 'GET' && storedId !== undefined && this.storedResponses.has(storedId)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(this.storedResponses.get(storedId)));
      return;
    }
    if (req.method === 'POST' && path === '/v1/responses/input_tokens') {
      // `responses.inputTokens.count`: free, never streamed.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'response.input_tokens', input_tokens: 11 }));
      return;
    }
    if (req.method === 'POST' && path === '/v1/responses/compact') {
      // `responses.compact` (Codex's remote compaction): a `response.compaction` object, never streamed.
      const u = OPENAI_USAGE;
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': `req_${randomUUID()}` });
      res.end(
        JSON.stringify({
          id: `resp_${randomUUID().replaceAll('-', '')}`,
          object: 'response.compaction',
          created_at: Math.floor(Date.now() / 1000),
          output: [
            {
              id: `cmp_${randomUUID().replaceAll('-', '')}`,
              type: 'compaction',
              encrypted_content: 'gAAAAABp-compacted-history',
            },
          ],
          usage: responsesUsage(u),
        }),
      );
      return;
    }
    if (req.method === 'POST' && (path === '/v1/chat/completions' || path === '/v1/responses')) {
      let body: {
        model?: string;
        stream?: boolean;
        stream_options?: { include_usage?: boolean };
        store?: boolean;
      };
      try {
        body = JSON.parse(seen.body);
      } catch {
        return this.error(res, {
          kind: 'error',
          status: 400,
          type: 'invalid_request_error',
          code: null,
          message: 'We could not parse the JSON body of your request.',
        });
      }
      const s = this.queue.shift() ?? { kind: 'text' };
      if (s.kind === 'error') return this.error(res, s);
      if (s.kind === 'hang') return;
      const model = body.model ?? 'gpt-5';
      if (path === '/v1/chat/completions')
        return this.chat(res, s, model, body.stream === true, body.stream_options?.include_usage === true);
      return this.responses(res, s, model, body.stream === true, body.store !== false);
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ method: req.method, url: seen.url }));
  }

  private error(res: http.ServerResponse, s: Extract<OpenAIScenario, { kind: 'error' }>): void {
    res.writeHead(s.status, { 'content-type': 'application/json', ...s.headers });
    res.end(JSON.stringify({ error: { message: s.message, type: s.type, param: null, code: s.code } }));
  }

  private async chat(
    res: http.ServerResponse,
    s: OpenAIScenario,
    model: string,
    stream: boolean,
    includeUsage: boolean,
  ): Promise<void> {
    const id = `chatcmpl-${randomUUID().replaceAll('-', '').slice(0, 24)}`;
    const created = Math.floor(Date.now() / 1000);
    const usage = ('usage' in s && s.usage) || OPENAI_USAGE;
    const base = {
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      service_tier: this.serviceTier,
      system_fingerprint: 'fp_mock',
    };
    if (!stream) {
      const message =
        s.kind === 'tool'
          ? {
              role: 'assistant',
              content: null,
              tool_calls: [
                {
                  id: 'call_mock_1',
                  type: 'function',
                  function: { name: s.name, arguments: JSON.stringify(s.arguments) },
                },
              ],
              refusal: null,
              annotations: [],
            }
          : {
              role: 'assistant',
              content: s.kind === 'text' && s.text ? s.text : OPENAI_TEXT,
              refusal: null,
              annotations: [],
            };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [
            { index: 0, message, logprobs: null, finish_reason: s.kind === 'tool' ? 'tool_calls' : 'stop' },
          ],
          usage: chatUsage(usage),
          service_tier: this.serviceTier,
          system_fingerprint: 'fp_mock',
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    const send = (choices: unknown[], extra: Record<string, unknown> = {}): void => {
      res.write(
        `data: ${JSON.stringify({ ...base, choices, ...(includeUsage ? { usage: null } : {}), ...extra })}\n\n`,
      );
    };
    const delta = (d: Record<string, unknown>, finish: string | null = null): unknown[] => [
      { index: 0, delta: d, logprobs: null, finish_reason: finish },
    ];
    send(delta({ role: 'assistant', content: '', refusal: null }));
    if (s.kind === 'reset') {
      await sleep(20);
      res.socket?.destroy();
      return;
    }
    if (s.kind === 'cut') {
      for (let i = 0; i < s.count; i++) send(delta({ content: `${i} ` }));
      await sleep(20);
      res.socket?.destroy();
      return;
    }
    if (s.kind === 'mid-stream-error') {
      send(delta({ content: 'Partial' }));
      res.write(
        `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request.', type: 'server_error', param: null, code: null } })}\n\n`,
      );
      res.end();
      return;
    }
    let finish = 'stop';
    if (s.kind === 'tool') {
      const args = JSON.stringify(s.arguments);
      const mid = Math.floor(args.length / 2);
      send(
        delta({
          tool_calls: [
            { index: 0, id: 'call_mock_1', type: 'function', function: { name: s.name, arguments: '' } },
          ],
        }),
      );
      send(delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(0, mid) } }] }));
      send(delta({ tool_calls: [{ index: 0, function: { arguments: args.slice(mid) } }] }));
      finish = 'tool_calls';
    } else if (s.kind === 'drip') {
      for (let i = 0; i < s.count; i++) {
        await sleep(s.delayMs);
        if (res.destroyed) return;
        send(delta({ content: `${i} ` }));
      }
    } else {
      const text = s.kind === 'text' && s.text ? s.text : OPENAI_TEXT;
      const mid = Math.floor(text.length / 2);
      send(delta({ content: text.slice(0, mid) }));
      send(delta({ content: text.slice(mid) }));
    }
    send(delta({}, finish));
    if (includeUsage && !(s.kind === 'text' && s.omitUsage))
      res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: chatUsage(usage) })}\n\n`);
    res.end('data: [DONE]\n\n');
  }

  private async responses(
    res: http.ServerResponse,
    s: OpenAIScenario,
    model: string,
    stream: boolean,
    store = true,
  ): Promise<void> {
    const id = `resp_${randomUUID().replaceAll('-', '')}`;
    // Every item has an id of its own, as OpenAI's do: a stored one can be named in a later input.
    const itemId = (prefix: string): string => `${prefix}_${randomUUID().replaceAll('-', '')}`;
    const usage = ('usage' in s && s.usage) || OPENAI_USAGE;
    const output: Record<string, unknown>[] = [];
    if (s.kind === 'tool') {
      output.push({
        type: 'function_call',
        id: itemId('fc'),
        call_id: 'call_mock_1',
        name: s.name,
        arguments: JSON.stringify(s.arguments),
        status: 'completed',
      });
    } else if (s.kind === 'mixed-tools') {
      output.push({
        type: 'custom_tool_call',
        id: 'ctc_1',
        call_id: 'call_patch',
        name: 'apply_patch',
        input: '*** Begin Patch\n*** End Patch',
      });
      output.push({
        type: 'local_shell_call',
        id: 'lsh_1',
        call_id: 'call_shell',
        status: 'completed',
        action: { type: 'exec', command: ['ls', '-la'], env: {} },
      });
      output.push({
        type: 'shell_call',
        id: 'sh_1',
        call_id: 'call_shell2',
        status: 'completed',
        action: { commands: ['git status'], timeout_ms: 1000, max_output_length: null },
        environment: { type: 'local' },
      });
      output.push({
        type: 'mcp_call',
        id: 'mcp_1',
        name: 'search_docs',
        server_label: 'docs',
        arguments: '{"q":"bridge"}',
        output: 'found',
        error: null,
      });
    } else {
      if (s.kind === 'hosted-searches') {
        output.push(
          {
            type: 'web_search_call',
            id: 'ws_1',
            status: 'completed',
            action: { type: 'search', query: 'bridge release notes' },
          },
          {
            type: 'web_search_call',
            id: 'ws_2',
            status: 'completed',
            action: { type: 'search', query: 'bridge changelog' },
          },
          { type: 'file_search_call', id: 'fs_1', status: 'completed', queries: ['runbook'], results: null },
        );
      }
      const text = s.kind === 'text' && s.text ? s.text : OPENAI_TEXT;
      output.push({
        type: 'message',
        id: itemId('msg'),
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
      });
    }
    const response = (status: string, out: unknown[], withUsage: boolean): Record<string, unknown> => ({
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status,
      error: null,
      incomplete_details: null,
      instructions: null,
      model,
      output: out,
      parallel_tool_calls: true,
      tool_choice: 'auto',
      tools: [],
      store,
      usage: withUsage ? responsesUsage(usage) : null,
      service_tier: this.serviceTier,
      metadata: {},
    });
    // Kept as OpenAI keeps it (`store`, the default), to be read back by id (`GET /v1/responses/:id`).
    if (store) this.storedResponses.set(id, response('completed', output, true));
    if (!stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(response('completed', output, true)));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    let seq = 0;
    const ev = (type: string, data: Record<string, unknown>): void => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: seq++ })}\n\n`);
    };
    ev('response.created', { response: response('in_progress', [], false) });
    ev('response.in_progress', { response: response('in_progress', [], false) });
    if (s.kind === 'reset') {
      await sleep(20);
      res.socket?.destroy();
      return;
    }
    if (s.kind === 'mid-stream-error') {
      ev('error', {
        code: 'server_error',
        message: 'The server had an error while processing your request.',
        param: null,
      });
      res.end();
      return;
    }
    for (const [i, item] of output.entries()) {
      if (item.type === 'message') {
        const text = ((item.content as { text: string }[])[0] as { text: string }).text;
        ev('response.output_item.added', {
          output_index: i,
          item: { ...item, status: 'in_progress', content: [] },
        });
        ev('response.content_part.added', {
          item_id: item.id,
          output_index: i,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        });
        const parts =
          s.kind === 'drip'
            ? Array.from({ length: s.count }, (_, n) => `${n} `)
            : [text.slice(0, 10), text.slice(10)];
        for (const p of parts) {
          if (s.kind === 'drip') await sleep(s.delayMs);
          if (res.destroyed) return;
          ev('response.output_text.delta', {
            item_id: item.id,
            output_index: i,
            content_index: 0,
            delta: p,
            logprobs: [],
          });
        }
        ev('response.output_text.done', {
          item_id: item.id,
          output_index: i,
          content_index: 0,
          text,
          logprobs: [],
        });
        ev('response.content_part.done', {
          item_id: item.id,
          output_index: i,
          content_index: 0,
          part: { type: 'output_text', text, annotations: [] },
        });
      } else if (item.type === 'function_call') {
        ev('response.output_item.added', {
          output_index: i,
          item: { ...item, arguments: '', status: 'in_progress' },
        });
        ev('response.function_call_arguments.delta', {
          item_id: item.id,
          output_index: i,
          delta: item.arguments,
        });
        ev('response.function_call_arguments.done', {
          item_id: item.id,
          output_index: i,
          arguments: item.arguments,
        });
      } else {
        ev('response.output_item.added', { output_index: i, item });
      }
      ev('response.output_item.done', { output_index: i, item });
    }
    ev('response.completed', { response: response('completed', output, true) });
    if ((s.kind === 'text' || s.kind === 'drip') && s.lingerMs) await sleep(s.lingerMs);
    res.end();
  }
}
