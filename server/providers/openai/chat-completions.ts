import type { IncomingHttpHeaders } from 'node:http';
import type { InterceptionError, ToolCallRecord } from '../../../shared/interception';
import { emptyUsage, type Usage } from '../../../shared/usage';
import { chatCacheFacts, withCache } from '../cache-key';
import {
  afterLastModelTurn,
  appendCapped,
  argumentsOf,
  errorFromBody,
  firstCount,
  inputBeyondBody,
  isObject,
  mcpServerOf,
  num,
  outputFacts,
  parseArguments,
  resultText,
  str,
  unpricedServiceTier,
  userString,
  userText,
} from '../common';
import { bodyModelNaming } from '../model-naming';
import {
  DROP,
  type EventVerdict,
  FORWARD,
  type JsonObject,
  type PreparedRequest,
  type RequestFacts,
  type ResponseFacts,
  type SseEvent,
  type StreamMeter,
  type WireApi,
} from '../types';
import { CallKeys, legacyCallId } from './call-keys';
import { chatHold } from './chat-hold';
import { chatInjection } from './chat-injection';
import { openaiError } from './errors';
import { sessionFromHeaders } from './session';
import { chatUsage } from './usage';

const TEXT = new Set(['text']);

function lastUserPrompt(messages: unknown): string | null {
  if (!Array.isArray(messages)) return null;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m: unknown = messages[i];
    if (!isObject(m) || m.role !== 'user') continue;
    if (typeof m.content === 'string') {
      const typed = userString(m.content);
      if (typed !== null) return typed;
      continue;
    }
    if (Array.isArray(m.content)) {
      const text = userText(m.content, TEXT);
      if (text !== null) return text;
    }
  }
  return null;
}

function call(id: string, name: string, input: unknown, at: Date): ToolCallRecord {
  return { id, name, server: mcpServerOf(name), input, injected: false, at: at.toISOString() };
}

/** A whole `tool_calls` entry: `function` calls carry JSON arguments, `custom` ones free text. */
function toolCallFrom(tc: unknown, at: Date): ToolCallRecord | undefined {
  if (!isObject(tc)) return undefined;
  const id = str(tc.id) ?? '';
  if (isObject(tc.function))
    return call(id, str(tc.function.name) ?? 'unknown', argumentsOf(tc.function.arguments), at);
  if (isObject(tc.custom))
    return call(id, str(tc.custom.name) ?? 'unknown', parseArguments(str(tc.custom.input) ?? ''), at);
  return undefined;
}

/** What the client added since the model's last turn; `tool` messages are the tool results. */
function chatTurn(messages: unknown): Pick<RequestFacts, 'toolResults' | 'newMessages'> {
  const newMessages = afterLastModelTurn(messages, (m) => m.role === 'assistant');
  const toolResults: RequestFacts['toolResults'] = [];
  for (const m of newMessages) {
    if (isObject(m) && m.role === 'tool' && typeof m.tool_call_id === 'string') {
      toolResults.push({ callId: m.tool_call_id, isError: false, content: resultText(m.content) });
    }
  }
  return { toolResults, newMessages };
}

class ChatStreamMeter implements StreamMeter {
  private usage: Usage = emptyUsage();
  private model: string | null = null;
  private error: InterceptionError | null = null;
  private readonly finishReasons: string[] = [];
  private text = '';
  private thinking = '';
  /** Tool calls assembled from deltas, by `choice:index`, in the order they started. */
  private readonly calls = new Map<string, { id: string; name: string; args: string; at: Date }>();
  private readonly keys = new CallKeys();
  /** The tier the chunks say served the request (each names it). */
  private tier: string | null = null;

  /** @param hideUsage the bridge asked for `include_usage` on the client's behalf and must hide it. */
  constructor(
    private readonly hideUsage: boolean,
    private readonly captureOutput: boolean,
  ) {}

  onEvent(ev: SseEvent, at: Date): EventVerdict {
    if (ev.data === '[DONE]') return FORWARD;
    let chunk: unknown;
    try {
      chunk = JSON.parse(ev.data);
    } catch {
      // Not JSON: the client gets the event as the provider sent it; the meter reads only what it understands.
      return FORWARD;
    }
    if (!isObject(chunk)) return FORWARD;
    if (isObject(chunk.error)) {
      this.error = errorFromBody(0, chunk);
      return FORWARD;
    }
    this.model ??= str(chunk.model);
    this.tier = str(chunk.service_tier) ?? this.tier;
    if (isObject(chunk.usage)) this.usage = chatUsage(chunk.usage);
    if (Array.isArray(chunk.choices)) {
      for (const choice of chunk.choices as unknown[]) {
        if (isObject(choice) && typeof choice.finish_reason === 'string')
          this.finishReasons.push(choice.finish_reason);
        if (this.captureOutput && isObject(choice) && isObject(choice.delta)) {
          if (typeof choice.delta.content === 'string')
            this.text = appendCapped(this.text, choice.delta.content);
          const r = choice.delta.reasoning_content ?? choice.delta.reasoning;
          if (typeof r === 'string') this.thinking = appendCapped(this.thinking, r);
        }
        if (!isObject(choice) || !isObject(choice.delta)) continue;
        const legacy = choice.delta.function_call;
        if (isObject(legacy)) {
          // The legacy `functions` answer, streamed: one call per choice, its arguments in pieces.
          const id = legacyCallId(num(choice.index));
          let c = this.calls.get(id);
          if (!c) {
            c = { id, name: '', args: '', at };
            this.calls.set(id, c);
          }
          if (typeof legacy.name === 'string' && legacy.name !== '') c.name = legacy.name;
          const part = str(legacy.arguments);
          if (part) c.args += part;
        }
        if (!Array.isArray(choice.delta.tool_calls)) continue;
        for (const d of choice.delta.tool_calls as unknown[]) {
          if (!isObject(d)) continue;
          const key = this.keys.key(num(choice.index), d);
          let c = this.calls.get(key);
          if (!c) {
            c = { id: '', name: '', args: '', at };
            this.calls.set(key, c);
          }
          if (typeof d.id === 'string') c.id = d.id;
          const fn = isObject(d.function) ? d.function : isObject(d.custom) ? d.custom : undefined;
          if (fn) {
            // A delta's name is the call's name, as the SDKs assemble it: some servers repeat it in every delta.
            if (typeof fn.name === 'string' && fn.name !== '') c.name = fn.name;
            const part = str(fn.arguments) ?? str(fn.input);
            if (part) c.args += part;
          }
        }
      }
    }
    if (!this.hideUsage || !('usage' in chunk)) return FORWARD;
    // The usage-only chunk the client did not ask for goes; so does the `usage: null` every
    // other chunk carries once include_usage is on.
    if (Array.isArray(chunk.choices) && chunk.choices.length === 0) return DROP;
    const { usage: _usage, ...rest } = chunk;
    return { action: 'replace', data: JSON.stringify(rest) };
  }

  result(): ResponseFacts {
    const toolCalls = [...this.calls.values()].map((c) =>
      call(c.id, c.name || 'unknown', parseArguments(c.args), c.at),
    );
    return {
      usage: { ...this.usage },
      toolCalls,
      model: this.model,
      error: this.error,
      finishReasons: [...this.finishReasons],
      ...(this.captureOutput ? { output: { text: this.text, thinking: this.thinking } } : {}),
      ...(this.tier !== null ? { serviceTier: this.tier } : {}),
    };
  }
}

/** OpenAI Chat Completions, `POST /chat/completions` under `/openai/v1`. */
export const chatCompletionsApi: WireApi = {
  name: 'chat.completions',
  method: 'POST',
  path: '/chat/completions',
  injection: chatInjection,
  toolHold: chatHold,
  // Every chunk names the model.
  modelNaming: bodyModelNaming([['model']]),
  unsupported: (body) => unpricedServiceTier(body),

  describeRequest(body: JsonObject, headers: IncomingHttpHeaders): RequestFacts {
    return {
      model: str(body.model),
      prompt: lastUserPrompt(body.messages),
      sessionId: sessionFromHeaders(headers),
      ...outputFacts(firstCount(body, 'max_completion_tokens', 'max_tokens'), body.n),
      inputBeyondBody: inputBeyondBody(body),
      ...chatTurn(body.messages),
      ...withCache(chatCacheFacts(body)),
    };
  },

  /** Streams report usage only with `stream_options.include_usage`: ask for it when the client did not. */
  prepare(body: JsonObject, raw: Buffer): PreparedRequest {
    const opts = isObject(body.stream_options) ? body.stream_options : undefined;
    if (body.stream !== true || opts?.include_usage === true) return { bytes: raw, rewriteStream: false };
    const bytes = Buffer.from(JSON.stringify({ ...body, stream_options: { ...opts, include_usage: true } }));
    return { bytes, rewriteStream: true };
  },

  fromJson(json: unknown, at: Date): ResponseFacts {
    if (!isObject(json)) return { usage: emptyUsage(), toolCalls: [], model: null, error: null };
    const toolCalls: ToolCallRecord[] = [];
    const finishReasons: string[] = [];
    if (Array.isArray(json.choices)) {
      for (const choice of json.choices as unknown[]) {
        if (isObject(choice) && typeof choice.finish_reason === 'string')
          finishReasons.push(choice.finish_reason);
        if (!isObject(choice) || !isObject(choice.message)) continue;
        // The legacy `functions` parameter's answer: one call, with no id of its own.
        const legacy = choice.message.function_call;
        if (isObject(legacy))
          toolCalls.push(
            call(
              legacyCallId(num(choice.index)),
              str(legacy.name) ?? 'unknown',
              argumentsOf(legacy.arguments),
              at,
            ),
          );
        if (!Array.isArray(choice.message.tool_calls)) continue;
        for (const tc of choice.message.tool_calls as unknown[]) {
          const c = toolCallFrom(tc, at);
          if (c) toolCalls.push(c);
        }
      }
    }
    let text = '';
    if (Array.isArray(json.choices)) {
      for (const c of json.choices as unknown[]) {
        if (isObject(c) && isObject(c.message) && typeof c.message.content === 'string')
          text = appendCapped(text, c.message.content);
      }
    }
    // Some servers (OpenRouter) answer an error that came after the model began with status 200,
    // the error in the body: `{"error": {"code": 502, "message"}}`.
    const failed = isObject(json.error) ? json.error : undefined;
    return {
      usage: chatUsage(json.usage),
      toolCalls,
      model: str(json.model),
      error: failed ? errorFromBody(typeof failed.code === 'number' ? failed.code : 502, json) : null,
      finishReasons,
      output: { text, thinking: '' },
      ...(typeof json.service_tier === 'string' ? { serviceTier: json.service_tier } : {}),
    };
  },

  createStreamMeter(prepared: PreparedRequest): StreamMeter {
    return new ChatStreamMeter(prepared.rewriteStream, prepared.captureOutput === true);
  },

  streamError(status: number, code: string, message: string): string {
    return `data: ${JSON.stringify({ error: openaiError(status, code, message) })}\n\n`;
  },
};

/** How an instance tunes Chat Completions. */
export interface ChatCompletionsOptions {
  /** Below the instance's prefix; default `/chat/completions` (Azure's deployments form differs). */
  path?: string;
  /**
   * Ask for stream usage when the client did not (default). Off for a server that rejects
   * `stream_options`: its streams are then relayed untouched and recorded without usage (floored).
   * A function decides per request from the client's query string (Azure's `api-version`).
   */
  forceUsage?: boolean | ((query: string) => boolean);
}

/** Chat Completions as an instance needs it; everything not tuned is OpenAI's. */
export function chatCompletions(o: ChatCompletionsOptions = {}): WireApi {
  const force = o.forceUsage;
  const untouched = (raw: Buffer): PreparedRequest => ({ bytes: raw, rewriteStream: false });
  return {
    ...chatCompletionsApi,
    path: o.path ?? chatCompletionsApi.path,
    ...(force === false ? { prepare: (_body: JsonObject, raw: Buffer) => untouched(raw) } : {}),
    ...(typeof force === 'function'
      ? {
          prepare: (body: JsonObject, raw: Buffer, query = '') =>
            force(query) ? chatCompletionsApi.prepare(body, raw) : untouched(raw),
        }
      : {}),
  };
}

/** Chat Completions at another path (Azure's deployments form). */
export function chatCompletionsAt(path: string): WireApi {
  return chatCompletions({ path });
}
