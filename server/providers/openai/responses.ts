import type { IncomingHttpHeaders } from 'node:http';
import type { InterceptionError, ToolCallRecord } from '../../../shared/interception';
import { emptyUsage, type Usage } from '../../../shared/usage';
import { ownableId } from '../../core/facts';
import { automaticCacheFacts, withCache } from '../cache-key';
import {
  afterLastModelTurn,
  appendCapped,
  argumentsOf,
  conversationIdOf,
  conversationMalformed,
  firstCount,
  inputBeyondBody,
  inputReferences,
  isObject,
  mcpServerOf,
  referencesMalformed,
  resultText,
  str,
  unpricedServiceTier,
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
import { CLIENT_CALL_ITEMS, CLIENT_RESULT_ITEMS, clientCall } from './responses-calls';
import { responsesHold } from './responses-hold';
import { responsesInjection } from './responses-injection';
import { sessionFromHeaders } from './session';
import { responsesUsage } from './usage';

const INPUT_TEXT = new Set(['input_text', 'text']);

/** `input` is a string, or items of which the last user message with text is the prompt. */
function lastUserPrompt(input: unknown): string | null {
  if (typeof input === 'string') return userString(input);
  if (!Array.isArray(input)) return null;
  for (let i = input.length - 1; i >= 0; i--) {
    const item: unknown = input[i];
    if (!isObject(item) || item.role !== 'user' || (item.type !== undefined && item.type !== 'message'))
      continue;
    if (typeof item.content === 'string') {
      const typed = userString(item.content);
      if (typed !== null) return typed;
      continue;
    }
    if (Array.isArray(item.content)) {
      const text = userText(item.content, INPUT_TEXT);
      if (text !== null) return text;
    }
  }
  return null;
}

/** An output item that is a tool call, as a record; undefined for messages, reasoning and the rest. */
function toolCallFrom(item: unknown, at: Date): ToolCallRecord | undefined {
  if (!isObject(item)) return undefined;
  const when = at.toISOString();
  const client = clientCall(item);
  if (client) {
    const named = item.type === 'function_call' || item.type === 'custom_tool_call';
    return { ...client, server: named ? mcpServerOf(client.name) : null, injected: false, at: when };
  }
  switch (item.type) {
    case 'mcp_call':
      return {
        id: str(item.id) ?? '',
        name: str(item.name) ?? 'unknown',
        server: str(item.server_label),
        input: argumentsOf(item.arguments),
        injected: false,
        at: when,
      };
    default:
      return undefined;
  }
}

/**
 * The hosted searches an output item is, as billed per call: `web_search_call` (web search) and
 * `file_search_call` (search over stored files). Usage reports tokens only; these are priced apart.
 */
function hostedSearch(item: unknown): 'webSearches' | 'fileSearches' | undefined {
  if (!isObject(item)) return undefined;
  if (item.type === 'web_search_call') return 'webSearches';
  if (item.type === 'file_search_call') return 'fileSearches';
  return undefined;
}

/** Usage with the hosted searches of `items` counted in. */
function withSearches(usage: Usage, items: Iterable<unknown>): Usage {
  const out = { ...usage };
  for (const item of items) {
    const kind = hostedSearch(item);
    if (kind) out[kind] = (out[kind] ?? 0) + 1;
  }
  return out;
}

function responseError(response: Record<string, unknown>): InterceptionError | null {
  if (!isObject(response.error)) return null;
  return {
    type: str(response.error.code) ?? 'response_failed',
    message: str(response.error.message) ?? 'response failed',
  };
}

/** The most output item ids recorded of one answer. */
const MAX_RESPONSE_ITEMS = 512;

/** Notes an output item's id among an answer's (responseItems), within the caps. */
function noteItem(item: unknown, into: Set<string>): void {
  if (!isObject(item) || typeof item.id !== 'string') return;
  if (ownableId(item.id) && into.size < MAX_RESPONSE_ITEMS) into.add(item.id);
}

/**
 * The answer's output item ids as its facts' `responseItems`: only when the provider stored it
 * (`store` not false), since only then can a later request name its items by reference.
 */
function itemsFact(items: Set<string>, stored: boolean): Pick<ResponseFacts, 'responseItems'> {
  return stored && items.size > 0 ? { responseItems: [...items] } : {};
}

class ResponsesStreamMeter implements StreamMeter {
  private usage: Usage = emptyUsage();
  private model: string | null = null;
  /** The id the answer is stored under: every event that carries the response names it, the first already. */
  private named: string | null = null;
  private error: InterceptionError | null = null;
  private finishReasons: string[] = [];
  private text = '';
  private thinking = '';

  constructor(private readonly captureOutput: boolean) {}
  private readonly toolCalls: ToolCallRecord[] = [];
  private readonly seen = new Set<string>();
  /** Output item ids (responseItems), and whether the response says it is not stored. */
  private readonly items = new Set<string>();
  private unstored = false;
  private completed = false;
  /** The tier the response says served it (`response.service_tier`). */
  private tier: string | null = null;

  /** Hosted search items by id: an item event and the final response name the same ones. */
  private readonly searches = new Map<string, unknown>();

  private addCall(item: unknown, at: Date): void {
    if (hostedSearch(item))
      this.searches.set(str((item as Record<string, unknown>).id) ?? `#${this.searches.size}`, item);
    const c = toolCallFrom(item, at);
    if (!c) return;
    const key = `${isObject(item) ? str(item.id) : ''}|${c.id}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.toolCalls.push(c);
  }

  onEvent(ev: SseEvent, at: Date): EventVerdict {
    let data: unknown;
    try {
      data = JSON.parse(ev.data);
    } catch {
      // Not JSON: the client gets the event as the provider sent it; the meter reads only what it understands.
      return FORWARD;
    }
    if (!isObject(data)) return FORWARD;
    const response = isObject(data.response) ? data.response : undefined;
    if (response) {
      this.model = str(response.model) ?? this.model;
      this.named ??= str(response.id);
      this.tier = str(response.service_tier) ?? this.tier;
      if (response.store === false) this.unstored = true;
    }
    switch (data.type) {
      case 'response.output_text.delta':
        if (this.captureOutput) this.text = appendCapped(this.text, str(data.delta) ?? '');
        break;
      case 'response.reasoning_summary_text.delta':
      case 'response.reasoning_text.delta':
        if (this.captureOutput) this.thinking = appendCapped(this.thinking, str(data.delta) ?? '');
        break;
      case 'response.output_item.added':
        noteItem(data.item, this.items);
        break;
      case 'response.output_item.done':
        noteItem(data.item, this.items);
        this.addCall(data.item, at);
        break;
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed':
        if (response) {
          this.completed = true;
          this.usage = responsesUsage(response.usage);
          this.finishReasons = finishReasonsOf(response);
          this.error = responseError(response) ?? this.error;
          // Some upstreams send only the final response: take calls it has that no item event named.
          if (Array.isArray(response.output))
            for (const item of response.output as unknown[]) {
              noteItem(item, this.items);
              this.addCall(item, at);
            }
        }
        break;
      case 'error':
        this.error = { type: str(data.code) ?? 'error', message: str(data.message) ?? 'stream error' };
        break;
    }
    return FORWARD;
  }

  responseId(): string | null {
    return this.named;
  }

  completedItems(): string[] | null {
    if (!this.completed) return null;
    return itemsFact(this.items, !this.unstored).responseItems ?? [];
  }

  result(): ResponseFacts {
    return {
      usage: withSearches(this.usage, this.searches.values()),
      toolCalls: [...this.toolCalls],
      model: this.model,
      error: this.error,
      finishReasons: this.finishReasons,
      ...(this.captureOutput ? { output: { text: this.text, thinking: this.thinking } } : {}),
      ...(this.named !== null ? { responseId: this.named } : {}),
      ...itemsFact(this.items, !this.unstored),
      ...(this.tier !== null ? { serviceTier: this.tier } : {}),
    };
  }
}

const MODEL_ITEMS = new Set([...CLIENT_CALL_ITEMS, 'reasoning', 'mcp_call']);

/** Input items added since the model's last turn; `*_output` items are the tool results. */
function responsesTurn(input: unknown): Pick<RequestFacts, 'toolResults' | 'newMessages'> {
  if (typeof input === 'string') return { toolResults: [], newMessages: [input] };
  const newMessages = afterLastModelTurn(
    input,
    (item) => item.role === 'assistant' || MODEL_ITEMS.has(String(item.type)),
  );
  const toolResults: RequestFacts['toolResults'] = [];
  for (const item of newMessages) {
    if (isObject(item) && CLIENT_RESULT_ITEMS.has(String(item.type)) && typeof item.call_id === 'string') {
      toolResults.push({ callId: item.call_id, isError: false, content: resultText(item.output) });
    }
  }
  return { toolResults, newMessages };
}

/** The output text and reasoning summaries of a whole response. */
function outputOf(output: unknown): { text: string; thinking: string } {
  let text = '';
  let thinking = '';
  if (Array.isArray(output)) {
    for (const item of output as unknown[]) {
      if (!isObject(item) || !Array.isArray(item.content ?? item.summary)) continue;
      for (const part of (item.content ?? item.summary) as unknown[]) {
        if (!isObject(part) || typeof part.text !== 'string') continue;
        if (item.type === 'reasoning') thinking = appendCapped(thinking, part.text);
        else if (part.type === 'output_text') text = appendCapped(text, part.text);
      }
    }
  }
  return { text, thinking };
}

/** A Responses status, or why it is incomplete (`max_output_tokens`, `content_filter`). */
function finishReasonsOf(response: Record<string, unknown>): string[] {
  const reason = isObject(response.incomplete_details) ? str(response.incomplete_details.reason) : null;
  const status = str(response.status);
  return reason ? [reason] : status ? [status] : [];
}

/** OpenAI Responses, `POST /responses` under `/openai/v1` (what Codex speaks). */
/**
 * The hosted `image_generation` tool: OpenAI bills each image at the image model's prices, and the
 * response's `usage` counts only the text model's tokens (its `image_generation_call` items carry
 * none). Served, an image costing about $0.25 was recorded at $0.004, and no budget stopped a
 * member making them. Refused, as `background: true` and the priority tier are.
 */
function unmeteredImageTool(body: JsonObject): string | null {
  const tools = Array.isArray(body.tools) ? body.tools : [];
  return tools.some((t) => isObject(t) && t.type === 'image_generation')
    ? 'The bridge does not accept the `image_generation` tool: its images are billed outside the response’s usage, so their cost could be neither metered nor charged to a budget. Leave the tool out.'
    : null;
}

export const responsesApi: WireApi = {
  name: 'responses',
  method: 'POST',
  path: '/responses',
  injection: responsesInjection,
  toolHold: responsesHold,
  // `response.created`, `response.in_progress`, `response.completed` (and kin) carry the response.
  modelNaming: bodyModelNaming([['response', 'model']]),
  // A failure right after these is still a failover: nothing of the answer has come yet.
  streamPreamble: ['response.created', 'response.in_progress'],

  // A background response answers at once with no usage, runs on the organisation's key, and is
  // read later through `GET /responses/{id}`, which is not metered: refused, not recorded as free.
  unsupported: (body) =>
    body.background === true
      ? 'The bridge does not accept `background: true`: a background response is billed after its answer, where the bridge cannot meter it or charge it to a budget. Send the request without `background` (streamed, if it is long).'
      : // Only a string is checked as the caller's own (continuesOwnResponse): anything else must
        // not go upstream unchecked, where a lenient server might take it as an id.
        body.previous_response_id !== undefined &&
          body.previous_response_id !== null &&
          typeof body.previous_response_id !== 'string'
        ? '`previous_response_id` must be a string (the id of a response of yours) or null.'
        : // Likewise a `conversation` whose id cannot be read (continuesOwnResponse checks the id).
          (conversationMalformed('conversation', body.conversation) ??
          referencesMalformed(body.input) ??
          unpricedServiceTier(body) ??
          unmeteredImageTool(body)),

  describeRequest(body: JsonObject, headers: IncomingHttpHeaders): RequestFacts {
    return {
      model: str(body.model),
      prompt: lastUserPrompt(body.input),
      sessionId: sessionFromHeaders(headers),
      maxOutputTokens: firstCount(body, 'max_output_tokens'),
      inputBeyondBody: inputBeyondBody(body),
      ...responsesTurn(body.input),
      ...(typeof body.previous_response_id === 'string' ? { continues: body.previous_response_id } : {}),
      ...conversationFact(body.conversation),
      ...referencesFact(body.input),
      // With previous_response_id or a stored conversation the body holds only the new items: no
      // prefix to compare.
      ...withCache(
        (body.previous_response_id === undefined || body.previous_response_id === null) &&
          (body.conversation === undefined || body.conversation === null)
          ? automaticCacheFacts(body.tools, body.instructions, body.input, body.prompt_cache_retention)
          : undefined,
      ),
    };
  },

  prepare(_body: JsonObject, raw: Buffer): PreparedRequest {
    return { bytes: raw, rewriteStream: false };
  },

  fromJson(json: unknown, at: Date): ResponseFacts {
    if (!isObject(json)) return { usage: emptyUsage(), toolCalls: [], model: null, error: null };
    const toolCalls: ToolCallRecord[] = [];
    const items = new Set<string>();
    if (Array.isArray(json.output)) {
      for (const item of json.output as unknown[]) {
        noteItem(item, items);
        const c = toolCallFrom(item, at);
        if (c) toolCalls.push(c);
      }
    }
    return {
      usage: withSearches(responsesUsage(json.usage), Array.isArray(json.output) ? json.output : []),
      toolCalls,
      model: str(json.model),
      error: responseError(json),
      finishReasons: finishReasonsOf(json),
      output: outputOf(json.output),
      // A compaction (`response.compaction`) has an id too; recording it as the caller's costs nothing.
      ...(typeof json.id === 'string' ? { responseId: json.id } : {}),
      ...itemsFact(items, json.store !== false),
      ...(typeof json.service_tier === 'string' ? { serviceTier: json.service_tier } : {}),
    };
  },

  createStreamMeter(prepared: PreparedRequest): StreamMeter {
    return new ResponsesStreamMeter(prepared.captureOutput === true);
  },

  streamError(_status: number, code: string, message: string): string {
    return `event: error\ndata: ${JSON.stringify({ type: 'error', code, message, param: null, sequence_number: 0 })}\n\n`;
  },
};

/** The stored items a request's input names by id alone, as its facts' `references`; none: no field. */
function referencesFact(input: unknown): Pick<RequestFacts, 'references'> {
  const ids = inputReferences(input);
  return ids === undefined ? {} : { references: ids };
}

/** The stored conversation a request names, as its facts' `conversation`; none: no field. */
function conversationFact(value: unknown): Pick<RequestFacts, 'conversation'> {
  const id = conversationIdOf(value);
  return id === undefined ? {} : { conversation: id };
}

/** Responses at another path (Azure's `/openai/v1/responses`); everything else as OpenAI's. */
export function responsesAt(path: string): WireApi {
  return { ...responsesApi, path };
}

/**
 * `POST /responses/compact` (Codex's remote compaction of a long conversation) at `path`: a
 * Responses body without tools, answered whole with a `response.compaction` object that carries
 * Responses usage, so it is metered as Responses. It takes no tools, so none are injected, and
 * answers no calls, so none are held.
 */
export function responsesCompactAt(path: string): WireApi {
  const { injection: _tools, toolHold: _calls, streamPreamble: _stream, ...compact } = responsesApi;
  return { ...compact, path };
}
