import type { IncomingHttpHeaders } from 'node:http';
import type { InterceptionError, ToolCallRecord } from '../../../shared/interception';
import { emptyUsage, type Usage } from '../../../shared/usage';
import {
  afterLastModelTurn,
  appendCapped,
  capText,
  errorFromBody,
  firstCount,
  isObject,
  mcpServerOf,
  outputFacts,
  resultText,
  str,
  typedText,
} from '../common';
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
import { resultCallIds, TurnCallIds } from './call-ids';
import { geminiError } from './errors';
import { generateContentHold } from './generate-content-hold';
import { geminiModelNaming } from './model-naming';
import { geminiUsage } from './usage';

/** Text of a content's parts, skipping thoughts; null when it has none. */
function partsText(parts: unknown): string | null {
  if (!Array.isArray(parts)) return null;
  // Gemini CLI opens the first turn with a `<session_context>` part: not what the developer typed.
  const texts = (parts as unknown[])
    .filter((p) => isObject(p) && typeof p.text === 'string' && p.thought !== true)
    .map((p) => typedText((p as { text: string }).text))
    .filter((t): t is string => t !== null);
  return texts.length > 0 ? capText(texts.join('\n')) : null;
}

function lastUserPrompt(contents: unknown): string | null {
  if (!Array.isArray(contents)) return null;
  for (let i = contents.length - 1; i >= 0; i--) {
    const c: unknown = contents[i];
    // A content without a role is the user's (the API's default).
    if (!isObject(c) || (c.role !== undefined && c.role !== 'user')) continue;
    const text = partsText(c.parts);
    if (text !== null) return text;
  }
  return null;
}

/**
 * What the client added since the model's last turn; `functionResponse` parts are the tool results,
 * each named by the id its call in that turn was recorded by (call-ids.ts).
 */
function turn(contents: unknown): Pick<RequestFacts, 'toolResults' | 'newMessages'> {
  const newMessages = afterLastModelTurn(contents, (c) => c.role === 'model');
  const responses: JsonObject[] = [];
  for (const c of newMessages) {
    if (!isObject(c) || !Array.isArray(c.parts)) continue;
    for (const p of c.parts as unknown[])
      if (isObject(p) && isObject(p.functionResponse)) responses.push(p.functionResponse);
  }
  if (responses.length === 0) return { toolResults: [], newMessages };
  const all = contents as unknown[];
  const callIds = resultCallIds(all[all.length - newMessages.length - 1], responses);
  const toolResults = responses.map((r, i) => {
    const response = isObject(r.response) ? r.response : {};
    return {
      callId: callIds[i]!,
      // Google's convention for a failed call is `{"error": …}` as the response.
      isError: response.error !== undefined && response.output === undefined,
      content: resultText(response.output ?? response.error ?? response.content ?? response),
    };
  });
  return { toolResults, newMessages };
}

/** A `functionCall` part as a tool call, its id the next of its turn's (call-ids.ts). */
function callFrom(part: unknown, at: Date, ids: TurnCallIds): ToolCallRecord | undefined {
  if (!isObject(part) || !isObject(part.functionCall)) return undefined;
  const fc = part.functionCall;
  const name = str(fc.name) ?? 'unknown';
  return {
    id: ids.next(part, fc),
    name,
    server: mcpServerOf(name),
    input: fc.args ?? {},
    injected: false,
    at: at.toISOString(),
  };
}

/** Reads `GenerateContentResponse`s, whole or one per streamed chunk, into one response's facts. */
class ResponseReader {
  usage: Usage = emptyUsage();
  model: string | null = null;
  error: InterceptionError | null = null;
  readonly toolCalls: ToolCallRecord[] = [];
  readonly finishReasons: string[] = [];
  text = '';
  thinking = '';
  /** Each candidate is a turn of its own, its calls counted apart (by `index`, else by position). */
  private readonly callIds = new Map<number, TurnCallIds>();
  /**
   * The Google Search queries each candidate's grounding ran (`groundingMetadata.webSearchQueries`,
   * which streamed chunks may repeat): billed per query or per grounded prompt (prices.ts), not in
   * the tokens.
   */
  private readonly searches = new Map<number, Set<string>>();

  read(chunk: unknown, at: Date): void {
    if (!isObject(chunk)) return;
    if (isObject(chunk.error)) {
      this.error = errorFromBody(0, chunk);
      return;
    }
    this.model ??= str(chunk.modelVersion);
    // Every chunk may carry usage so far; the last one that has it is the total.
    if (isObject(chunk.usageMetadata)) this.usage = geminiUsage(chunk.usageMetadata);
    if (!Array.isArray(chunk.candidates)) return;
    for (const [position, cand] of (chunk.candidates as unknown[]).entries()) {
      if (!isObject(cand)) continue;
      if (typeof cand.finishReason === 'string') this.finishReasons.push(cand.finishReason);
      const parts = isObject(cand.content) && Array.isArray(cand.content.parts) ? cand.content.parts : [];
      const index = typeof cand.index === 'number' ? cand.index : position;
      const grounding = isObject(cand.groundingMetadata)
        ? cand.groundingMetadata.webSearchQueries
        : undefined;
      if (Array.isArray(grounding)) {
        let seen = this.searches.get(index);
        if (!seen) {
          seen = new Set();
          this.searches.set(index, seen);
        }
        // Bounded: a count, not a list kept.
        for (const q of grounding as unknown[]) if (typeof q === 'string' && seen.size < 1000) seen.add(q);
      }
      const ids = this.callIdsOf(index);
      for (const p of parts as unknown[]) {
        const call = callFrom(p, at, ids);
        if (call) this.toolCalls.push(call);
        else if (isObject(p) && typeof p.text === 'string') {
          if (p.thought === true) this.thinking = appendCapped(this.thinking, p.text);
          else this.text = appendCapped(this.text, p.text);
        }
      }
    }
  }

  private callIdsOf(candidate: number): TurnCallIds {
    let ids = this.callIds.get(candidate);
    if (!ids) {
      ids = new TurnCallIds();
      this.callIds.set(candidate, ids);
    }
    return ids;
  }

  facts(captureOutput: boolean): ResponseFacts {
    let searches = 0;
    for (const seen of this.searches.values()) searches += seen.size;
    return {
      usage: searches > 0 ? { ...this.usage, webSearches: searches } : { ...this.usage },
      toolCalls: [...this.toolCalls],
      model: this.model,
      error: this.error,
      finishReasons: [...this.finishReasons],
      ...(captureOutput ? { output: { text: this.text, thinking: this.thinking } } : {}),
    };
  }
}

/** `streamGenerateContent?alt=sse`: one `data:` event per chunk, no event names, no end marker. */
class GeminiStreamMeter implements StreamMeter {
  private readonly reader = new ResponseReader();

  constructor(private readonly captureOutput: boolean) {}

  onEvent(ev: SseEvent, at: Date): EventVerdict {
    try {
      this.reader.read(JSON.parse(ev.data), at);
    } catch {
      // Not JSON: relayed as sent; the meter reads only what it understands.
    }
    return FORWARD;
  }

  result(): ResponseFacts {
    return this.reader.facts(this.captureOutput);
  }
}

/**
 * Google's APIs answer in the format `alt` (or `$alt`) names, wrapped in a JavaScript call with
 * `callback`. Only JSON and SSE can be metered and judged by tool policy: `alt=proto` (protobuf),
 * `media` or JSONP would go through unread, a free answer with its tool calls unseen.
 */
function unreadableAlt(query: string): string | null {
  // Names are percent-decoded as Google decodes them (`%61lt` is `alt`).
  if (query.length <= 1) return null;
  const params = new URLSearchParams(query);
  for (const name of ['alt', '$alt']) {
    for (const v of params.getAll(name)) {
      if (v !== 'sse' && v !== 'json')
        return `The bridge does not accept \`${name}=${v.slice(0, 20)}\`: only JSON and SSE answers can be metered. Leave \`alt\` out, or send \`alt=sse\` to stream.`;
    }
  }
  // A field mask (a system parameter of every Google API) can leave `usageMetadata` out of the
  // answer: a served answer would be recorded as free. Its header form is dropped (headers.ts).
  for (const name of ['fields', '$fields'])
    if (params.has(name))
      return `The bridge does not accept \`${name}\`: the answer's usage must reach the bridge to be metered. Leave the field mask out.`;
  // JSONP (another system parameter): the answer comes as JavaScript the bridge cannot read, so
  // its usage would be floored from the body, however large the cached content or file it names.
  for (const name of ['callback', '$callback'])
    if (params.has(name))
      return `The bridge does not accept \`${name}\`: a JSONP answer's usage cannot be read to be metered. Leave it out.`;
  return null;
}

/**
 * `streamGenerateContent` without `alt=sse` answers one JSON array, its elements sent as they are
 * made, each with the usage so far: the bridge could read it only whole, and a client that left
 * before its last element would be recorded at a floor from the bytes, without the thinking and
 * cached tokens every element had reported (23 % of the cost, measured). Google's SDKs stream with
 * `alt=sse`, which is metered event by event.
 */
function arrayStream(query: string): string | null {
  const params = new URLSearchParams(query.length > 1 ? query : '');
  const alt = params.getAll('alt').concat(params.getAll('$alt'));
  return alt.length > 0 && alt.every((v) => v === 'sse')
    ? null
    : 'The bridge streams `streamGenerateContent` only as server-sent events: send `alt=sse` (as Google’s SDKs do). Its JSON-array form can be read only whole, so an answer left before its end could not be metered.';
}

/** Gemini's tools that the provider runs, reading what they find as input. */
const GOOGLE_TOOLS = [
  'googleSearch',
  'google_search',
  'googleSearchRetrieval',
  'google_search_retrieval',
  'urlContext',
  'url_context',
  'codeExecution',
  'code_execution',
  'googleMaps',
  'google_maps',
];

/**
 * Why a Gemini request's input may be larger than its body: a cached content, files and videos by
 * URI (`fileData`, YouTube too), and Google's own tools (search, URL context, code execution).
 */
function geminiInputBeyondBody(body: JsonObject): string[] {
  const why = new Set<string>();
  if (typeof body.cachedContent === 'string' || typeof body.cached_content === 'string')
    why.add('cachedContent');
  if (Array.isArray(body.tools)) {
    for (const t of body.tools as unknown[])
      if (isObject(t))
        for (const name of GOOGLE_TOOLS) if (t[name] !== undefined) why.add(`server tool ${name}`);
  }
  if (Array.isArray(body.contents)) {
    for (const c of body.contents as unknown[]) {
      if (!isObject(c) || !Array.isArray(c.parts)) continue;
      for (const p of c.parts as unknown[])
        if (isObject(p) && (isObject(p.fileData) || isObject(p.file_data))) why.add('file reference');
        else if (isObject(p)) {
          // Inline PDF pages and video seconds are priced per page and per second, not per byte.
          const inline = isObject(p.inlineData)
            ? p.inlineData
            : isObject(p.inline_data)
              ? p.inline_data
              : null;
          const mime = inline ? String(inline.mimeType ?? inline.mime_type ?? '') : '';
          if (mime === 'application/pdf' || mime.startsWith('video/')) why.add('inline pdf or video');
        }
    }
  }
  return [...why];
}

/**
 * Vertex's `streamFunctionCallArguments` sends a call's arguments in pieces (`partialArgs`) across
 * chunks: tool policy judges, and the record keeps, a call's whole arguments, which no chunk holds.
 */
function streamedArguments(body: JsonObject): string | null {
  // Every spelling is looked at, not the first found: Google's JSON parser takes a field under
  // either name, and a body may carry both (`toolConfig: {}` beside `tool_config: {…}`).
  for (const tc of [body.toolConfig, body.tool_config]) {
    if (!isObject(tc)) continue;
    for (const fc of [tc.functionCallingConfig, tc.function_calling_config]) {
      if (
        isObject(fc) &&
        (fc.streamFunctionCallArguments === true || fc.stream_function_call_arguments === true)
      )
        return 'The bridge does not accept `streamFunctionCallArguments`: tool policy and the audit record need each function call whole. Leave it out; calls then arrive whole in one chunk.';
    }
  }
  return null;
}

/** Service tiers billed at or below the standard prices, the only ones the price data has. */
const PRICED_TIERS = new Set([
  'standard',
  'flex',
  'unspecified',
  'service_tier_standard',
  'service_tier_flex',
  'service_tier_unspecified',
]);

/**
 * Gemini's `service_tier: "priority"` (`SERVICE_TIER_PRIORITY`) is billed 75 to 100% above the
 * standard prices: served, it would be recorded and charged to budgets at about half its cost, as
 * OpenAI's priority tier would (refused there too). Looked for under both spellings, at the top
 * and in `generationConfig`; a value that is not a known standard or cheaper tier is refused.
 */
function unpricedTier(body: JsonObject): string | null {
  const configs = [body, body.generationConfig, body.generation_config];
  for (const c of configs) {
    if (!isObject(c)) continue;
    for (const name of ['serviceTier', 'service_tier']) {
      const v = c[name];
      if (v === undefined || v === null) continue;
      if (typeof v === 'string' && PRICED_TIERS.has(v.toLowerCase())) continue;
      return `The bridge does not accept \`${name}: ${JSON.stringify(v).slice(0, 40)}\`: it is billed above the prices the bridge knows, so its cost would be under-counted. Leave it out, or send \`standard\` or \`flex\`.`;
    }
  }
  return null;
}

/**
 * Gemini's `generateContent` and `streamGenerateContent` at `path` (the model is in the path:
 * the family's `modelFor` reads it). The request goes upstream as the client sent it.
 */
export function generateContentAt(path: string): WireApi {
  const streams = path.endsWith(':streamGenerateContent');
  return {
    name: 'generateContent',
    method: 'POST',
    path,
    toolHold: generateContentHold,
    modelNaming: geminiModelNaming,
    unsupported: (body, query) =>
      unreadableAlt(query) ??
      (streams ? arrayStream(query) : null) ??
      streamedArguments(body) ??
      unpricedTier(body),

    describeRequest(body: JsonObject, _headers: IncomingHttpHeaders): RequestFacts {
      // Google's parser takes each field under either spelling: the reservation takes the most any
      // spelling asks for (the fewest would let a snake_case config slip past the estimate).
      const configs = [body.generationConfig, body.generation_config].filter(isObject);
      const most = (read: (c: JsonObject) => number | null): number | null =>
        configs.reduce<number | null>((m, c) => {
          const v = read(c);
          return v === null ? m : Math.max(m ?? 0, v);
        }, null);
      return {
        model: null,
        prompt: lastUserPrompt(body.contents),
        sessionId: null,
        ...outputFacts(
          most((c) => firstCount(c, 'maxOutputTokens', 'max_output_tokens')),
          most((c) => firstCount(c, 'candidateCount', 'candidate_count')),
        ),
        inputBeyondBody: geminiInputBeyondBody(body),
        ...turn(body.contents),
      };
    },

    prepare: (_body: JsonObject, raw: Buffer): PreparedRequest => ({ bytes: raw, rewriteStream: false }),

    /** A whole answer (a JSON array of chunks too, as an older bridge let `streamGenerateContent` answer). */
    fromJson(json: unknown, at: Date): ResponseFacts {
      const reader = new ResponseReader();
      for (const chunk of Array.isArray(json) ? (json as unknown[]) : [json]) reader.read(chunk, at);
      return reader.facts(true);
    },

    createStreamMeter: (prepared: PreparedRequest): StreamMeter =>
      new GeminiStreamMeter(prepared.captureOutput === true),

    streamError: (status: number, code: string, message: string): string =>
      `data: ${JSON.stringify({ error: geminiError(status, code, message) })}\n\n`,
  };
}
