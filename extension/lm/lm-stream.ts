import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** What the chat receives as the answer streams: text as it comes, a tool call once whole. */
export type StreamedPart =
  | { kind: 'text'; text: string }
  | { kind: 'toolCall'; callId: string; name: string; input: object };

export interface StreamChatOptions {
  /** The bridge's base URL. */
  url: string;
  /** The signed-in user's bridge key. */
  key: string;
  sessionId: string;
  /** The Messages API body (lm-wire.ts `anthropicRequest`). */
  body: Record<string, unknown>;
  /** Aborted when the chat's cancellation token fires: the upstream request is cut with it. */
  signal?: AbortSignal;
  onPart: (part: StreamedPart) => void;
  fetchImpl?: typeof fetch;
}

/** The client name the bridge records these requests under (server/proxy/client-detect.ts). */
export const VSCODE_CHAT_CLIENT = 'vscode-chat';

/**
 * A refusal or failure, with the bridge's (or provider's) own message, so the chat shows "Your
 * team's monthly budget is spent" rather than a generic failure. `code` is the bridge's error code
 * (docs/errors.md) or the provider's error type.
 */
export class ChatRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'ChatRequestError';
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `{ error: { code | type, message } }`: the bridge's own errors and the Messages API's alike. */
function errorFrom(status: number, json: unknown, fallback: string): ChatRequestError {
  const err = isObject(json) && isObject(json.error) ? json.error : undefined;
  const message = typeof err?.message === 'string' && err.message !== '' ? err.message : fallback;
  const code =
    typeof err?.code === 'string' ? err.code : typeof err?.type === 'string' ? err.type : undefined;
  return new ChatRequestError(message, status, code);
}

async function refusal(res: Response): Promise<ChatRequestError> {
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON (a proxy's HTML page): the status says what there is to say.
  }
  return errorFrom(res.status, json, `The bridge answered ${res.status} ${res.statusText}`.trim());
}

/** Turns Messages stream events into parts; a tool call is emitted at its block's end, input parsed. */
class MessagesStreamReader {
  private readonly tools = new Map<number, { callId: string; name: string; json: string }>();
  error: ChatRequestError | undefined;
  /** The stream's `message_stop` arrived: the answer is whole. */
  stopped = false;

  constructor(private readonly onPart: (p: StreamedPart) => void) {}

  event(e: EventSourceMessage): void {
    let data: unknown;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    if (!isObject(data)) return;
    const index = typeof data.index === 'number' ? data.index : -1;
    switch (data.type) {
      case 'content_block_start': {
        const b = data.content_block;
        if (isObject(b) && b.type === 'tool_use')
          this.tools.set(index, { callId: String(b.id), name: String(b.name), json: '' });
        return;
      }
      case 'content_block_delta': {
        const d = data.delta;
        if (!isObject(d)) return;
        if (d.type === 'text_delta' && typeof d.text === 'string' && d.text !== '')
          this.onPart({ kind: 'text', text: d.text });
        else if (d.type === 'input_json_delta' && typeof d.partial_json === 'string') {
          const t = this.tools.get(index);
          if (t) t.json += d.partial_json;
        }
        return;
      }
      case 'content_block_stop': {
        const t = this.tools.get(index);
        if (!t) return;
        this.tools.delete(index);
        let input: unknown = {};
        try {
          input = t.json.trim() === '' ? {} : JSON.parse(t.json);
        } catch {
          this.error = new ChatRequestError(
            `The model sent arguments for ${t.name} that are not JSON.`,
            502,
            undefined,
          );
          return;
        }
        this.onPart({
          kind: 'toolCall',
          callId: t.callId,
          name: t.name,
          input: isObject(input) ? input : {},
        });
        return;
      }
      case 'message_stop':
        this.stopped = true;
        return;
      case 'error':
        this.error = errorFrom(502, data, 'The provider failed while answering.');
        return;
    }
  }
}

/**
 * Sends one chat request through the bridge's `/anthropic/v1/messages` and reports the answer as
 * it streams. The request names the client (`x-aibridge-client: vscode-chat`) and the
 * conversation's session (`x-aibridge-session-id`); a refusal throws {@link ChatRequestError}
 * with the bridge's message; an abort of `signal` cuts the upstream request.
 */
export async function streamChat(o: StreamChatOptions): Promise<void> {
  const fetchImpl = o.fetchImpl ?? fetch;
  let res: Response;
  try {
    res = await send(fetchImpl, o);
  } catch (err) {
    throw networkFailure(err, o.signal, `Cannot reach the bridge at ${o.url}`);
  }
  if (!res.ok) throw await refusal(res);
  if (!res.body) throw new ChatRequestError('The bridge sent no answer.', res.status, undefined);
  const reader = new MessagesStreamReader(o.onPart);
  const parser = createParser({ onEvent: (e) => reader.event(e) });
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      if (reader.error) throw reader.error;
    }
  } catch (err) {
    throw networkFailure(err, o.signal, 'The connection to the bridge broke while the model answered');
  }
  if (reader.error) throw reader.error;
  // A stream cut cleanly (a proxy's timeout, the bridge going away) ends without message_stop: what
  // arrived is part of an answer, and the chat must not show it as the whole one.
  if (!reader.stopped)
    throw new ChatRequestError('The answer was cut off before the model finished.', 502, undefined);
}

/**
 * A failure to reach the bridge or to read its answer (fetch's bare "fetch failed", "terminated")
 * as a sentence the chat can show, with the network's code. An abort (the chat was cancelled) and
 * the bridge's own refusals pass through unchanged.
 */
function networkFailure(err: unknown, signal: AbortSignal | undefined, what: string): unknown {
  if (err instanceof ChatRequestError || signal?.aborted || (err as Error).name === 'AbortError') return err;
  const cause = (err as { cause?: { code?: unknown } }).cause?.code;
  const why = typeof cause === 'string' ? cause : (err as Error).message;
  return new ChatRequestError(`${what} (${why}).`, 0, 'unreachable');
}

function send(fetchImpl: typeof fetch, o: StreamChatOptions): Promise<Response> {
  return fetchImpl(`${o.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      'anthropic-version': '2023-06-01',
      authorization: `Bearer ${o.key}`,
      'x-aibridge-client': VSCODE_CHAT_CLIENT,
      'x-aibridge-session-id': o.sessionId,
    },
    body: JSON.stringify(o.body),
    signal: o.signal,
  });
}
