import { randomUUID } from 'node:crypto';
import http, { type IncomingHttpHeaders } from 'node:http';
import { type Listening, listenOnLoopback } from './loopback';

export interface SeenCompatRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface CompatUsage {
  prompt: number;
  completion: number;
}

export const OLLAMA_USAGE: CompatUsage = { prompt: 26, completion: 9 };
export const AZURE_USAGE: CompatUsage = { prompt: 1200, completion: 300 };
export const AZURE_KEY = 'azure-upstream-key-4f1c9e';
export const COMPAT_TEXT = 'Hello from a compatible server.';

type Body = {
  model?: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  messages?: { role: string; content: unknown }[];
  tools?: unknown[];
};

function sse(res: http.ServerResponse, data: unknown): void {
  res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

/** Azure's content filter annotations on every choice and the prompt. */
const FILTER_OK = {
  hate: { filtered: false, severity: 'safe' },
  self_harm: { filtered: false, severity: 'safe' },
  sexual: { filtered: false, severity: 'safe' },
  violence: { filtered: false, severity: 'safe' },
};

/**
 * A server speaking Chat Completions the way Ollama's `/v1` and Azure OpenAI do: Ollama streams no
 * usage unless `stream_options.include_usage` is set (then a last chunk with `choices: []`); Azure
 * adds content-filter annotations, `apim-request-id`, the `api-key` header, the deployments form,
 * and answers a prompt containing "forbidden" with its content-filter 400.
 */
export class CompatMock {
  readonly requests: SeenCompatRequest[] = [];
  private server = http.createServer((req, res) => {
    void this.handle(req, res);
  });
  private listening: Listening | undefined;

  constructor(private readonly flavour: 'ollama' | 'azure') {}

  get url(): string {
    return this.listening!.origin;
  }

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  private authorised(h: IncomingHttpHeaders): boolean {
    if (this.flavour === 'ollama') return true;
    return h['api-key'] === AZURE_KEY || h.authorization === `Bearer ${AZURE_KEY}`;
  }

  /** The path and deployment of a chat request, or undefined when the path is not one. */
  private chatPath(path: string): { deployment: string | null } | undefined {
    if (this.flavour === 'ollama') return path === '/v1/chat/completions' ? { deployment: null } : undefined;
    if (path === '/openai/v1/chat/completions') return { deployment: null };
    const m = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(path);
    return m ? { deployment: m[1]! } : undefined;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    };
    this.requests.push(seen);
    const [path, query] = seen.url.split('?') as [string, string | undefined];
    if (this.flavour === 'azure') res.setHeader('apim-request-id', randomUUID());
    if (!this.authorised(req.headers)) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ error: { code: '401', message: 'Access denied due to invalid subscription key.' } }),
      );
      return;
    }
    const responsesPath = this.flavour === 'ollama' ? '/v1/responses' : '/openai/v1/responses';
    // Azure's dated form of the Responses API (what the AzureOpenAI SDK calls): `api-version` required.
    const datedResponses =
      this.flavour === 'azure' && path === '/openai/responses' && /api-version=/.test(query ?? '');
    if (req.method === 'POST' && (path === responsesPath || datedResponses))
      return this.responses(res, JSON.parse(seen.body) as Body);
    const chat = req.method === 'POST' ? this.chatPath(path) : undefined;
    if (!chat) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: '404', message: 'Resource not found' } }));
      return;
    }
    if (chat.deployment !== null && !/api-version=/.test(query ?? '')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: '404', message: 'Resource not found' } }));
      return;
    }
    const body = JSON.parse(seen.body) as Body;
    // Azure's api-versions before 2024-09-01-preview know no `stream_options`.
    const version = /(?:^|&)api-version=(\d{4}-\d{2}-\d{2})/.exec(query ?? '')?.[1];
    if (chat.deployment !== null && version !== undefined && version < '2024-09-01' && body.stream_options) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            message: 'Unrecognized request argument supplied: stream_options',
            type: 'invalid_request_error',
            param: null,
            code: null,
          },
        }),
      );
      return;
    }
    const prompt = JSON.stringify(body.messages ?? []);
    if (this.flavour === 'azure' && prompt.includes('forbidden')) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            message:
              "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            type: null,
            param: 'prompt',
            code: 'content_filter',
            status: 400,
            innererror: {
              code: 'ResponsibleAIPolicyViolation',
              content_filter_result: { ...FILTER_OK, violence: { filtered: true, severity: 'high' } },
            },
          },
        }),
      );
      return;
    }
    // Azure answers with the deployed model's name (not the deployment's) for a deployment named
    // `team-*`, as a real resource does; other names are taken to be the model's.
    const deployed = chat.deployment ?? body.model;
    const model =
      this.flavour === 'azure' && deployed?.startsWith('team-')
        ? 'gpt-4o-2024-11-20'
        : (deployed ?? 'llama3.2');
    const usage = this.flavour === 'ollama' ? OLLAMA_USAGE : AZURE_USAGE;
    const wireUsage = {
      prompt_tokens: usage.prompt,
      completion_tokens: usage.completion,
      total_tokens: usage.prompt + usage.completion,
    };
    const tool = (body.tools?.length ?? 0) > 0;
    const id = `chatcmpl-${randomUUID().slice(0, 8)}`;
    const created = Math.floor(Date.now() / 1000);
    const azure = this.flavour === 'azure';
    const call = {
      id: 'call_1',
      type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
    };
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          object: 'chat.completion',
          created,
          model,
          system_fingerprint: azure ? 'fp_azure' : 'fp_ollama',
          choices: [
            {
              index: 0,
              message: tool
                ? { role: 'assistant', content: '', tool_calls: [call] }
                : { role: 'assistant', content: COMPAT_TEXT },
              finish_reason: tool ? 'tool_calls' : 'stop',
              ...(azure ? { content_filter_results: FILTER_OK } : {}),
            },
          ],
          usage: wireUsage,
          ...(azure
            ? { prompt_filter_results: [{ prompt_index: 0, content_filter_results: FILTER_OK }] }
            : {}),
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: azure ? 'fp_azure' : 'fp_ollama',
      choices,
      ...extra,
    });
    if (azure)
      sse(res, {
        ...chunk([]),
        model: '',
        prompt_filter_results: [{ prompt_index: 0, content_filter_results: FILTER_OK }],
      });
    if (tool) {
      sse(
        res,
        chunk([
          {
            index: 0,
            delta: { role: 'assistant', content: '', tool_calls: [{ index: 0, ...call }] },
            finish_reason: null,
          },
        ]),
      );
    } else {
      for (const word of COMPAT_TEXT.split(/(?<= )/))
        sse(res, chunk([{ index: 0, delta: { role: 'assistant', content: word }, finish_reason: null }]));
    }
    sse(
      res,
      chunk([
        { index: 0, delta: { role: 'assistant', content: '' }, finish_reason: tool ? 'tool_calls' : 'stop' },
      ]),
    );
    // Neither streams usage unless asked.
    if (body.stream_options?.include_usage === true) sse(res, chunk([], { usage: wireUsage }));
    sse(res, '[DONE]');
    res.end();
  }

  /** The Responses API as Ollama (0.13+) and Azure's v1 API stream it: usage on `response.completed`. */
  private responses(res: http.ServerResponse, body: Body): void {
    const usage = this.flavour === 'ollama' ? OLLAMA_USAGE : AZURE_USAGE;
    const id = `resp_${randomUUID().replaceAll('-', '')}`;
    const model = body.model ?? 'llama3.2';
    const message = {
      type: 'message',
      id: 'msg_1',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: COMPAT_TEXT, annotations: [] }],
    };
    const response = (status: string, output: unknown[], withUsage: boolean) => ({
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status,
      error: null,
      model,
      output,
      usage: withUsage
        ? {
            input_tokens: usage.prompt,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: usage.completion,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: usage.prompt + usage.completion,
          }
        : null,
    });
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(response('completed', [message], true)));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let seq = 0;
    const ev = (type: string, data: Record<string, unknown>): void => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: seq++ })}\n\n`);
    };
    ev('response.created', { response: response('in_progress', [], false) });
    ev('response.output_item.added', {
      output_index: 0,
      item: { ...message, status: 'in_progress', content: [] },
    });
    ev('response.content_part.added', {
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    });
    ev('response.output_text.delta', {
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      delta: COMPAT_TEXT,
    });
    ev('response.output_text.done', {
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      text: COMPAT_TEXT,
    });
    ev('response.content_part.done', {
      item_id: 'msg_1',
      output_index: 0,
      content_index: 0,
      part: message.content[0],
    });
    ev('response.output_item.done', { output_index: 0, item: message });
    ev('response.completed', { response: response('completed', [message], true) });
    res.end();
  }
}
