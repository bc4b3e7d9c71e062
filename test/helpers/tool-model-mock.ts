import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { UPSTREAM_KEY } from './anthropic-mock';
import { type Listening, listenOnLoopback } from './loopback';
import { OPENAI_UPSTREAM_KEY } from './openai-mock';

export type MockApi = 'messages' | 'chat.completions' | 'responses';

/** What the mock model sees in one request. */
export interface ModelView {
  api: MockApi;
  /** Offered tools whose names carry the bridge's prefix. */
  injected: string[];
  /** Every offered tool's name. */
  tools: string[];
  toolChoiceNone: boolean;
  /** Tool results the request ends with (what the last round's calls returned). */
  results: { id: string; text: string; isError: boolean }[];
  /** Model turns with tool calls already in the conversation. */
  rounds: number;
  body: Record<string, unknown>;
}

/** What the mock model answers: some text, and calls of any tools it likes. */
export interface ModelTurn {
  text?: string;
  /** `namespace`: Responses only, a call of a tool inside a `namespace` tool (Codex offers MCP tools so). */
  calls?: { name: string; input: Record<string, unknown>; namespace?: string }[];
}

export type Brain = (v: ModelView) => ModelTurn;

export const ECHO = 'aibridge__everything__echo';

/** Calls the injected echo tool when it is offered; answers with what the tools said once it has results. */
export const defaultBrain: Brain = (v) => {
  if (v.results.length > 0)
    return {
      text: `Tool said: ${v.results.map((r) => (r.isError ? `ERROR ${r.text}` : r.text)).join(' | ')}`,
    };
  if (!v.toolChoiceNone && v.injected.includes(ECHO))
    return { text: 'Let me check.', calls: [{ name: ECHO, input: { message: 'hello from the model' } }] };
  return { text: 'No tools needed.' };
};

/** Usage per round, in each API's terms. */
export const ROUND_USAGE = { input: 20, output: 8, cacheRead: 5, cacheWrite: 3 };

// Real time is the point here: the mock stalls, drips and cuts like a real upstream, for the bridge's own timers.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content.map((b) => (isObj(b) && typeof b.text === 'string' ? b.text : '')).join('');
  return '';
}

function toolName(t: unknown): string {
  if (!isObj(t)) return '';
  if (typeof t.name === 'string') return t.name;
  return isObj(t.function) && typeof t.function.name === 'string' ? t.function.name : '';
}

/** Reads the conversation the way a model would: offered tools, trailing tool results, earlier rounds. */
export function view(api: MockApi, body: Record<string, unknown>): ModelView {
  const tools = Array.isArray(body.tools) ? body.tools.map(toolName) : [];
  const choice = body.tool_choice;
  const toolChoiceNone = api === 'messages' ? isObj(choice) && choice.type === 'none' : choice === 'none';
  const results: ModelView['results'] = [];
  let rounds = 0;
  if (api === 'messages') {
    const msgs = (body.messages as Record<string, unknown>[]) ?? [];
    rounds = msgs.filter(
      (m) =>
        m.role === 'assistant' && Array.isArray(m.content) && m.content.some((b) => b.type === 'tool_use'),
    ).length;
    const last = msgs.at(-1);
    if (last?.role === 'user' && Array.isArray(last.content))
      for (const b of last.content as Record<string, unknown>[])
        if (b.type === 'tool_result')
          results.push({ id: String(b.tool_use_id), text: textOf(b.content), isError: b.is_error === true });
  } else if (api === 'chat.completions') {
    const msgs = (body.messages as Record<string, unknown>[]) ?? [];
    rounds = msgs.filter((m) => m.role === 'assistant' && Array.isArray(m.tool_calls)).length;
    for (let i = msgs.length - 1; i >= 0 && msgs[i]!.role === 'tool'; i--) {
      const text = textOf(msgs[i]!.content);
      results.unshift({ id: String(msgs[i]!.tool_call_id), text, isError: text.startsWith('Error:') });
    }
  } else {
    const input = Array.isArray(body.input) ? (body.input as Record<string, unknown>[]) : [];
    rounds = input.filter(
      (it, i) => it.type === 'function_call' && input[i - 1]?.type !== 'function_call',
    ).length;
    for (let i = input.length - 1; i >= 0 && input[i]!.type === 'function_call_output'; i--) {
      // A string, or (Codex, for MCP results) an array of content parts.
      const output = input[i]!.output;
      const text = typeof output === 'string' ? output : textOf(output);
      results.unshift({ id: String(input[i]!.call_id), text, isError: text.startsWith('Error:') });
    }
  }
  return {
    api,
    tools,
    injected: tools.filter((t) => t.startsWith('aibridge__')),
    toolChoiceNone,
    results,
    rounds,
    body,
  };
}

export interface SeenModelRequest {
  api: MockApi;
  body: Record<string, unknown>;
  view: ModelView;
  /** When the request arrived (ms since the epoch). */
  at: number;
}

/**
 * A model upstream for all three wire APIs, streamed and not, in each API's real event format,
 * whose answers a `brain` decides from the conversation: by default it calls the bridge's injected
 * echo tool when offered and answers with the tool's result once it has one.
 */
export class ToolModelMock {
  brain: Brain = defaultBrain;
  /** Pause between streamed events, to see that text reaches the client before a round ends. */
  eventDelayMs = 0;
  readonly requests: SeenModelRequest[] = [];
  /** Each answer's body exactly as written, in request order (to compare with what a client got). */
  readonly sent: string[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;
  url = '';

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = `${this.listening.origin}`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = (req.url ?? '').split('?')[0];
    const api: MockApi | undefined =
      path === '/v1/messages'
        ? 'messages'
        : path === '/v1/chat/completions'
          ? 'chat.completions'
          : path === '/v1/responses'
            ? 'responses'
            : undefined;
    const authorised =
      api === 'messages'
        ? req.headers['x-api-key'] === UPSTREAM_KEY
        : req.headers.authorization === `Bearer ${OPENAI_UPSTREAM_KEY}`;
    if (!api || req.method !== 'POST' || !authorised) {
      res.writeHead(api ? 401 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { type: 'mock', message: 'no' } }));
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    const v = view(api, body);
    this.requests.push({ api, body, view: v, at: Date.now() });
    const n = this.sent.push('') - 1;
    const write = res.write.bind(res);
    res.write = ((chunk: string) => {
      this.sent[n] += chunk;
      return write(chunk);
    }) as typeof res.write;
    const end = res.end.bind(res);
    res.end = ((chunk?: string) => {
      if (typeof chunk === 'string') this.sent[n] += chunk;
      return end(chunk);
    }) as typeof res.end;
    const turn = this.brain(v);
    const stream = body.stream === true;
    const model = String(body.model ?? 'mock-model');
    res.setHeader(api === 'messages' ? 'request-id' : 'x-request-id', `req_${randomUUID().slice(0, 8)}`);
    if (api === 'messages')
      return stream ? this.messagesStream(res, turn, model) : this.messagesJson(res, turn, model);
    if (api === 'chat.completions') {
      const opts = isObj(body.stream_options) ? body.stream_options : {};
      return stream
        ? this.chatStream(res, turn, model, opts.include_usage === true)
        : this.chatJson(res, turn, model);
    }
    return stream ? this.responsesStream(res, turn, model) : this.responsesJson(res, turn, model);
  }

  private async sse(res: http.ServerResponse, event: string | null, data: unknown): Promise<void> {
    if (this.eventDelayMs) await sleep(this.eventDelayMs);
    res.write(
      `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`,
    );
  }

  private anthropicUsage(): Record<string, number> {
    return {
      input_tokens: ROUND_USAGE.input,
      output_tokens: ROUND_USAGE.output,
      cache_read_input_tokens: ROUND_USAGE.cacheRead,
      cache_creation_input_tokens: ROUND_USAGE.cacheWrite,
    };
  }

  private messagesJson(res: http.ServerResponse, turn: ModelTurn, model: string): void {
    const content: unknown[] = [];
    if (turn.text) content.push({ type: 'text', text: turn.text });
    for (const c of turn.calls ?? [])
      content.push({
        type: 'tool_use',
        id: `toolu_${randomUUID().slice(0, 12)}`,
        name: c.name,
        input: c.input,
      });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: `msg_${randomUUID().slice(0, 12)}`,
        type: 'message',
        role: 'assistant',
        model,
        content,
        stop_reason: turn.calls?.length ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: this.anthropicUsage(),
      }),
    );
  }

  private async messagesStream(res: http.ServerResponse, turn: ModelTurn, model: string): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const u = this.anthropicUsage();
    await this.sse(res, 'message_start', {
      type: 'message_start',
      message: {
        id: `msg_${randomUUID().slice(0, 12)}`,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...u, output_tokens: 1 },
      },
    });
    let index = 0;
    if (turn.text) {
      await this.sse(res, 'content_block_start', {
        type: 'content_block_start',
        index,
        content_block: { type: 'text', text: '' },
      });
      await this.sse(res, 'ping', { type: 'ping' });
      const mid = Math.floor(turn.text.length / 2);
      for (const part of [turn.text.slice(0, mid), turn.text.slice(mid)])
        await this.sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'text_delta', text: part },
        });
      await this.sse(res, 'content_block_stop', { type: 'content_block_stop', index });
      index++;
    }
    for (const c of turn.calls ?? []) {
      const json = JSON.stringify(c.input);
      const mid = Math.floor(json.length / 2);
      await this.sse(res, 'content_block_start', {
        type: 'content_block_start',
        index,
        content_block: {
          type: 'tool_use',
          id: `toolu_${randomUUID().slice(0, 12)}`,
          name: c.name,
          input: {},
        },
      });
      for (const part of [json.slice(0, mid), json.slice(mid)])
        await this.sse(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: part },
        });
      await this.sse(res, 'content_block_stop', { type: 'content_block_stop', index });
      index++;
    }
    await this.sse(res, 'message_delta', {
      type: 'message_delta',
      delta: { stop_reason: turn.calls?.length ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: ROUND_USAGE.output },
    });
    await this.sse(res, 'message_stop', { type: 'message_stop' });
    res.end();
  }

  private chatUsage(): Record<string, unknown> {
    const prompt = ROUND_USAGE.input + ROUND_USAGE.cacheRead;
    return {
      prompt_tokens: prompt,
      completion_tokens: ROUND_USAGE.output,
      total_tokens: prompt + ROUND_USAGE.output,
      prompt_tokens_details: { cached_tokens: ROUND_USAGE.cacheRead },
      completion_tokens_details: { reasoning_tokens: 2 },
    };
  }

  private chatCalls(
    turn: ModelTurn,
  ): { id: string; type: 'function'; function: { name: string; arguments: string } }[] {
    return (turn.calls ?? []).map((c, i) => ({
      id: `call_${i}_${randomUUID().slice(0, 8)}`,
      type: 'function',
      function: { name: c.name, arguments: JSON.stringify(c.input) },
    }));
  }

  private chatJson(res: http.ServerResponse, turn: ModelTurn, model: string): void {
    const calls = this.chatCalls(turn);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: `chatcmpl-${randomUUID().slice(0, 12)}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model,
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: turn.text ?? null,
              ...(calls.length ? { tool_calls: calls } : {}),
              refusal: null,
            },
            logprobs: null,
            finish_reason: calls.length ? 'tool_calls' : 'stop',
          },
        ],
        usage: this.chatUsage(),
      }),
    );
  }

  private async chatStream(
    res: http.ServerResponse,
    turn: ModelTurn,
    model: string,
    includeUsage: boolean,
  ): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const base = {
      id: `chatcmpl-${randomUUID().slice(0, 12)}`,
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model,
    };
    const send = (delta: Record<string, unknown>, finish: string | null = null): Promise<void> =>
      this.sse(res, null, {
        ...base,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        ...(includeUsage ? { usage: null } : {}),
      });
    await send({ role: 'assistant', content: '', refusal: null });
    if (turn.text) {
      const mid = Math.floor(turn.text.length / 2);
      await send({ content: turn.text.slice(0, mid) });
      await send({ content: turn.text.slice(mid) });
    }
    const calls = this.chatCalls(turn);
    for (const [i, c] of calls.entries()) {
      await send({
        tool_calls: [
          { index: i, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } },
        ],
      });
      const args = c.function.arguments;
      const mid = Math.floor(args.length / 2);
      await send({ tool_calls: [{ index: i, function: { arguments: args.slice(0, mid) } }] });
      await send({ tool_calls: [{ index: i, function: { arguments: args.slice(mid) } }] });
    }
    await send({}, calls.length ? 'tool_calls' : 'stop');
    if (includeUsage) await this.sse(res, null, { ...base, choices: [], usage: this.chatUsage() });
    await this.sse(res, null, '[DONE]');
    res.end();
  }

  private responsesOutput(turn: ModelTurn): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    if (turn.text)
      out.push({
        type: 'message',
        id: `msg_${randomUUID().slice(0, 12)}`,
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: turn.text, annotations: [] }],
      });
    for (const c of turn.calls ?? [])
      out.push({
        type: 'function_call',
        id: `fc_${randomUUID().slice(0, 12)}`,
        call_id: `call_${randomUUID().slice(0, 12)}`,
        name: c.name,
        ...(c.namespace ? { namespace: c.namespace } : {}),
        arguments: JSON.stringify(c.input),
        status: 'completed',
      });
    return out;
  }

  private responseObject(
    id: string,
    model: string,
    status: string,
    output: unknown[],
    body: { usage: boolean },
  ): Record<string, unknown> {
    return {
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status,
      error: null,
      incomplete_details: null,
      model,
      output,
      parallel_tool_calls: true,
      tool_choice: 'auto',
      tools: [],
      usage: body.usage
        ? {
            input_tokens: ROUND_USAGE.input + ROUND_USAGE.cacheRead,
            input_tokens_details: { cached_tokens: ROUND_USAGE.cacheRead },
            output_tokens: ROUND_USAGE.output,
            output_tokens_details: { reasoning_tokens: 2 },
            total_tokens: ROUND_USAGE.input + ROUND_USAGE.cacheRead + ROUND_USAGE.output,
          }
        : null,
    };
  }

  private responsesJson(res: http.ServerResponse, turn: ModelTurn, model: string): void {
    res.writeHead(200, { 'content-type': 'application/json' });
    const id = `resp_${randomUUID().replaceAll('-', '')}`;
    res.end(
      JSON.stringify(
        this.responseObject(id, model, 'completed', this.responsesOutput(turn), { usage: true }),
      ),
    );
  }

  private async responsesStream(res: http.ServerResponse, turn: ModelTurn, model: string): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const id = `resp_${randomUUID().replaceAll('-', '')}`;
    let seq = 0;
    const ev = (type: string, data: Record<string, unknown>): Promise<void> =>
      this.sse(res, type, { type, ...data, sequence_number: seq++ });
    await ev('response.created', {
      response: this.responseObject(id, model, 'in_progress', [], { usage: false }),
    });
    await ev('response.in_progress', {
      response: this.responseObject(id, model, 'in_progress', [], { usage: false }),
    });
    const output = this.responsesOutput(turn);
    for (const [i, item] of output.entries()) {
      if (item.type === 'message') {
        const text = (item.content as { text: string }[])[0]!.text;
        await ev('response.output_item.added', {
          output_index: i,
          item: { ...item, status: 'in_progress', content: [] },
        });
        await ev('response.content_part.added', {
          item_id: item.id,
          output_index: i,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        });
        const mid = Math.floor(text.length / 2);
        for (const delta of [text.slice(0, mid), text.slice(mid)])
          await ev('response.output_text.delta', {
            item_id: item.id,
            output_index: i,
            content_index: 0,
            delta,
          });
        await ev('response.output_text.done', { item_id: item.id, output_index: i, content_index: 0, text });
        await ev('response.content_part.done', {
          item_id: item.id,
          output_index: i,
          content_index: 0,
          part: { type: 'output_text', text, annotations: [] },
        });
      } else {
        await ev('response.output_item.added', {
          output_index: i,
          item: { ...item, arguments: '', status: 'in_progress' },
        });
        await ev('response.function_call_arguments.delta', {
          item_id: item.id,
          output_index: i,
          delta: item.arguments,
        });
        await ev('response.function_call_arguments.done', {
          item_id: item.id,
          output_index: i,
          arguments: item.arguments,
        });
      }
      await ev('response.output_item.done', { output_index: i, item });
    }
    await ev('response.completed', {
      response: this.responseObject(id, model, 'completed', output, { usage: true }),
    });
    res.end();
  }
}
