import type { IncomingHttpHeaders } from 'node:http';
import type { ToolCallRecord } from '../../../shared/interception';
import { emptyUsage, type Usage } from '../../../shared/usage';
import { explicitCacheFacts, withCache } from '../cache-key';
import {
  afterLastModelTurn,
  appendCapped,
  errorFromBody,
  firstCount,
  inputBeyondBody,
  isObject,
  mcpServerOf,
  num,
  parseArguments,
  resultText,
  str,
  userString,
  userText,
} from '../common';
import { bodyModelNaming } from '../model-naming';
import {
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
import { anthropicErrorBody } from './errors';
import { messagesHold } from './messages-hold';
import { messagesInjection } from './messages-injection';

const TEXT = new Set(['text']);

/** The text of the last user turn that has text (tool-result-only turns are the agent's, not the user's). */
export function lastUserPrompt(messages: unknown): string | null {
  if (!Array.isArray(messages)) return null;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m: unknown = messages[i];
    if (!isObject(m) || m.role !== 'user') continue;
    if (typeof m.content === 'string') {
      const typed = userString(m.content);
      if (typed !== null) return typed;
      continue;
    }
    if (!Array.isArray(m.content)) continue;
    const text = userText(m.content, TEXT);
    if (text !== null) return text;
  }
  return null;
}

/** The text and thinking blocks of a whole response. */
function outputOf(content: unknown): { text: string; thinking: string } {
  let text = '';
  let thinking = '';
  if (Array.isArray(content)) {
    for (const b of content as unknown[]) {
      if (!isObject(b)) continue;
      if (b.type === 'text') text = appendCapped(text, str(b.text) ?? '');
      else if (b.type === 'thinking') thinking = appendCapped(thinking, str(b.thinking) ?? '');
    }
  }
  return { text, thinking };
}

/** What the client added since the model's last turn, and the tool results in it. */
function turn(messages: unknown): Pick<RequestFacts, 'toolResults' | 'newMessages'> {
  const newMessages = afterLastModelTurn(messages, (m) => m.role === 'assistant');
  const toolResults: RequestFacts['toolResults'] = [];
  for (const m of newMessages) {
    if (!isObject(m) || !Array.isArray(m.content)) continue;
    for (const b of m.content as unknown[]) {
      if (isObject(b) && b.type === 'tool_result' && typeof b.tool_use_id === 'string') {
        toolResults.push({
          callId: b.tool_use_id,
          isError: b.is_error === true,
          content: resultText(b.content),
        });
      }
    }
  }
  return { toolResults, newMessages };
}

/**
 * Anthropic reports input excluding cache reads and writes, which is already our normal form.
 * The thinking part of the output comes as `output_tokens_details.thinking_tokens` (at the end of a
 * stream, in message_delta): it is the record's `reasoning`, already inside `output_tokens`.
 */
function usageFrom(u: unknown, into: Usage = emptyUsage()): Usage {
  if (!isObject(u)) return into;
  // A count message_delta does not report may come as `null` (its schema's `number | null`): the
  // earlier count stands, as the SDK keeps it; only a number replaces it.
  if (typeof u.input_tokens === 'number') into.input = num(u.input_tokens);
  if (typeof u.output_tokens === 'number') into.output = num(u.output_tokens);
  if (typeof u.cache_read_input_tokens === 'number') into.cacheRead = num(u.cache_read_input_tokens);
  if (typeof u.cache_creation_input_tokens === 'number') into.cacheWrite = num(u.cache_creation_input_tokens);
  if (isObject(u.output_tokens_details) && typeof u.output_tokens_details.thinking_tokens === 'number')
    into.reasoning = num(u.output_tokens_details.thinking_tokens);
  // Priced apart: one-hour cache writes cost more than five-minute ones, web searches per search.
  if (isObject(u.cache_creation) && 'ephemeral_1h_input_tokens' in u.cache_creation) {
    const n = num(u.cache_creation.ephemeral_1h_input_tokens);
    if (n > 0) into.cacheWrite1h = n;
    else delete into.cacheWrite1h;
  }
  if (isObject(u.server_tool_use) && 'web_search_requests' in u.server_tool_use) {
    const n = num(u.server_tool_use.web_search_requests);
    if (n > 0) into.webSearches = n;
    else delete into.webSearches;
  }
  return into;
}

function toolCall(block: Record<string, unknown>, input: unknown, at: Date): ToolCallRecord {
  const name = str(block.name) ?? 'unknown';
  return {
    id: str(block.id) ?? '',
    name,
    // An MCP connector's call (`mcp_tool_use`) names its server apart: rules see it as
    // `mcp__<server>__<tool>`, as a client's own MCP call.
    server: (block.type === 'mcp_tool_use' ? str(block.server_name) : null) ?? mcpServerOf(name),
    input,
    injected: false,
    at: at.toISOString(),
  };
}

const TOOL_BLOCKS = new Set(['tool_use', 'server_tool_use', 'mcp_tool_use']);

class MessagesStreamMeter implements StreamMeter {
  private readonly usage = emptyUsage();
  private readonly toolCalls: ToolCallRecord[] = [];
  private model: string | null = null;
  private error: ResponseFacts['error'] = null;
  private finishReasons: string[] = [];
  private text = '';
  private thinking = '';

  constructor(private readonly captureOutput: boolean) {}
  /** Tool-use blocks still streaming their input, by content index. */
  private readonly open = new Map<number, { block: Record<string, unknown>; json: string; at: Date }>();

  onEvent(ev: SseEvent, at: Date): EventVerdict {
    if (ev.event === 'ping') return FORWARD;
    // Most of a stream is text deltas: with no output to keep and no tool input streaming, the
    // meter needs nothing from them, so they are not parsed (usage comes in message_start/_delta).
    if (ev.event === 'content_block_delta' && !this.captureOutput && this.open.size === 0) return FORWARD;
    let data: unknown;
    try {
      data = JSON.parse(ev.data);
    } catch {
      // Not JSON: the client gets the event as the provider sent it; the meter reads only what it understands.
      return FORWARD;
    }
    if (!isObject(data)) return FORWARD;
    switch (data.type) {
      case 'message_start':
        if (isObject(data.message)) {
          this.model = str(data.message.model);
          usageFrom(data.message.usage, this.usage);
        }
        break;
      case 'message_delta':
        // Counts here are cumulative for the message, so they replace what message_start said.
        usageFrom(data.usage, this.usage);
        if (isObject(data.delta) && typeof data.delta.stop_reason === 'string') {
          this.finishReasons = [data.delta.stop_reason];
        }
        break;
      case 'content_block_start':
        if (isObject(data.content_block) && TOOL_BLOCKS.has(String(data.content_block.type))) {
          this.open.set(num(data.index), { block: data.content_block, json: '', at });
        }
        break;
      case 'content_block_delta': {
        const t = this.open.get(num(data.index));
        if (t && isObject(data.delta) && data.delta.type === 'input_json_delta') {
          t.json += str(data.delta.partial_json) ?? '';
        } else if (this.captureOutput && isObject(data.delta)) {
          if (data.delta.type === 'text_delta')
            this.text = appendCapped(this.text, str(data.delta.text) ?? '');
          else if (data.delta.type === 'thinking_delta')
            this.thinking = appendCapped(this.thinking, str(data.delta.thinking) ?? '');
        }
        break;
      }
      case 'content_block_stop': {
        const t = this.open.get(num(data.index));
        if (t) {
          this.open.delete(num(data.index));
          const input = t.json === '' && isObject(t.block.input) ? t.block.input : parseArguments(t.json);
          this.toolCalls.push(toolCall(t.block, input, t.at));
        }
        break;
      }
      case 'error':
        this.error = errorFromBody(0, data);
        break;
    }
    return FORWARD;
  }

  result(): ResponseFacts {
    return {
      usage: { ...this.usage },
      toolCalls: [...this.toolCalls],
      model: this.model,
      error: this.error,
      finishReasons: this.finishReasons,
      ...(this.captureOutput ? { output: { text: this.text, thinking: this.thinking } } : {}),
    };
  }
}

/**
 * Fast mode (`speed: "fast"`, Claude Code's `/fast`) is billed at a multiple of the standard
 * prices (two to six times, twelve past 200k input), the only ones the price data has: served, it
 * would be recorded and charged to budgets at a fraction of its cost. Refused, as OpenAI's and
 * Gemini's priority tiers are; `standard` (or none) passes.
 */
function unpricedSpeed(body: JsonObject): string | null {
  const speed = body.speed;
  return speed === undefined || speed === null || speed === 'standard'
    ? null
    : `The bridge does not accept \`speed: ${JSON.stringify(speed).slice(0, 40)}\`: fast mode is billed above the prices the bridge knows, so its cost would be under-counted. Leave it out, or send \`standard\`.`;
}

/**
 * Data residency (`inference_geo: "us"`) is billed above the standard prices, the only ones the
 * price data has: served, it would be under-counted as fast mode would. `global` (or none) passes.
 */
function unpricedGeo(body: JsonObject): string | null {
  const geo = body.inference_geo;
  return geo === undefined || geo === null || geo === 'global'
    ? null
    : `The bridge does not accept \`inference_geo: ${JSON.stringify(geo).slice(0, 40)}\`: inference in one region is billed above the prices the bridge knows, so its cost would be under-counted. Leave it out, or send \`global\`.`;
}

/** The Anthropic Messages API, `POST /v1/messages`. */
export const messagesApi: WireApi = {
  name: 'messages',
  method: 'POST',
  path: '/v1/messages',
  injection: messagesInjection,
  toolHold: messagesHold,
  // A stream names its model once, in `message_start`.
  modelNaming: bodyModelNaming([['message', 'model']]),
  unsupported: (body) => unpricedSpeed(body) ?? unpricedGeo(body),

  describeRequest(body: JsonObject, headers: IncomingHttpHeaders): RequestFacts {
    const sessionHeader = headers['x-claude-code-session-id'];
    const metadata = isObject(body.metadata) ? body.metadata : undefined;
    return {
      model: str(body.model),
      prompt: lastUserPrompt(body.messages),
      sessionId: (typeof sessionHeader === 'string' && sessionHeader) || str(metadata?.user_id),
      maxOutputTokens: firstCount(body, 'max_tokens'),
      inputBeyondBody: inputBeyondBody(body),
      ...turn(body.messages),
      ...withCache(explicitCacheFacts(body.tools, body.system, body.messages)),
    };
  },

  prepare(_body: JsonObject, raw: Buffer): PreparedRequest {
    return { bytes: raw, rewriteStream: false };
  },

  fromJson(json: unknown, at: Date): ResponseFacts {
    if (!isObject(json)) return { usage: emptyUsage(), toolCalls: [], model: null, error: null };
    const toolCalls: ToolCallRecord[] = [];
    if (Array.isArray(json.content)) {
      for (const block of json.content as unknown[]) {
        if (isObject(block) && TOOL_BLOCKS.has(String(block.type)))
          toolCalls.push(toolCall(block, block.input ?? {}, at));
      }
    }
    return {
      usage: usageFrom(json.usage),
      toolCalls,
      model: str(json.model),
      error: json.type === 'error' ? errorFromBody(0, json) : null,
      finishReasons: typeof json.stop_reason === 'string' ? [json.stop_reason] : [],
      output: outputOf(json.content),
    };
  },

  createStreamMeter(prepared: PreparedRequest): StreamMeter {
    return new MessagesStreamMeter(prepared.captureOutput === true);
  },

  streamError(status: number, _code: string, message: string): string {
    return `event: error\ndata: ${JSON.stringify(anthropicErrorBody(status, message))}\n\n`;
  },
};
