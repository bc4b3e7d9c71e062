import type { IncomingHttpHeaders } from 'node:http';
import type { ApiName, InterceptionError, ToolCallRecord } from '../../shared/interception';
import type { Usage } from '../../shared/usage';
import type { ToolInjection } from './injection';

export type JsonObject = Record<string, unknown>;

/** What the bridge learns from a request body before sending it on. */
export interface RequestFacts {
  model: string | null;
  /** The text of the last user message: what the developer asked. */
  prompt: string | null;
  sessionId: string | null;
  /**
   * Why the request's real input may be larger than its body (`previous_response_id`, a stored
   * conversation, file references, server-side tools); empty when the body is all of it.
   */
  inputBeyondBody?: string[];
  /** The most output the request allows (`max_tokens` and kin), for budget reservations; null when unsaid. */
  maxOutputTokens: number | null;
  /** Tool results the client sends back in this request. */
  toolResults: { callId: string; isError: boolean; content: string }[];
  /** The messages (or input items) added since the model's last turn. */
  newMessages: unknown[];
}

/** What the bridge learns from a response, whole or streamed. */
export interface ResponseFacts {
  usage: Usage;
  toolCalls: ToolCallRecord[];
  /** The model that answered, when the response names it. */
  model: string | null;
  /** An error the provider reported (an error body, or an error event mid-stream). */
  error: InterceptionError | null;
  /** Why generation stopped (`end_turn`, `tool_use`, `stop`, `length`, ...), as the provider says it. */
  finishReasons?: string[];
  /** The model's text and thinking, when the request asked for output capture. */
  output?: { text: string; thinking: string };
}

export interface SseEvent {
  event: string | undefined;
  data: string;
  id: string | undefined;
}

/** What to do with one event of a stream the bridge rewrites. */
export type EventVerdict = { action: 'forward' } | { action: 'drop' } | { action: 'replace'; data: string };

export const FORWARD: EventVerdict = Object.freeze({ action: 'forward' });
export const DROP: EventVerdict = Object.freeze({ action: 'drop' });

/**
 * Fed every SSE event of a streamed response as it passes; never holds the whole stream. Its
 * verdicts matter only when the request was prepared with `rewriteStream` (the bridge asked the
 * provider for something the client did not, and must hide it again); otherwise bytes pass as sent.
 */
export interface StreamMeter {
  onEvent(ev: SseEvent, at: Date): EventVerdict;
  result(): ResponseFacts;
}

/** The request as it goes upstream. */
export interface PreparedRequest {
  bytes: Buffer;
  /** Relay the stream event by event, applying the meter's verdicts, instead of byte for byte. */
  rewriteStream: boolean;
  /** Keep the model's text and thinking (capture level `full`). */
  captureOutput?: boolean;
}

/** One metered wire API: its endpoint, how to read its requests, responses and streams. */
export interface WireApi {
  readonly name: ApiName;
  readonly method: 'POST';
  /** Path below the provider's prefix, e.g. `/v1/messages`. */
  readonly path: string;
  describeRequest(body: JsonObject, headers: IncomingHttpHeaders): RequestFacts;
  /** The bytes to send upstream; APIs that need nothing changed return `raw`. */
  prepare(body: JsonObject, raw: Buffer): PreparedRequest;
  fromJson(json: unknown, at: Date): ResponseFacts;
  createStreamMeter(prepared: PreparedRequest): StreamMeter;
  /** An error as an SSE event, for a stream whose headers are already sent. */
  streamError(status: number, code: string, message: string): string;
  /** Offering tools the bridge runs itself (MCP, docs/mcp.md); absent: the API's requests are never given any. */
  readonly injection?: ToolInjection;
}

/** An unmetered endpoint the bridge forwards: `:name` segments match any one segment. */
export interface PassthroughRoute {
  readonly methods: readonly ('GET' | 'HEAD' | 'POST' | 'DELETE')[];
  readonly path: string;
  /** Why it is safe to forward unmetered, for docs/api.md. */
  readonly why: string;
}

/**
 * One provider behind one object: where it is mounted, how its key is sent, its error shape, and
 * the wire APIs the bridge meters there. Shared proxy code talks only to this interface and never
 * branches on a provider's name; adding a provider means adding one folder under providers/.
 */
export interface ProviderAdapter {
  /** Recorded as the interception's `provider`; also the key of its upstream in the config. */
  readonly id: string;
  /** Where the bridge mounts it: `{prefix}/X` goes to `{upstream base}/X`. */
  readonly prefix: string;
  /** The provider's request-id response header, kept on the record. */
  readonly requestIdHeader: string;
  readonly apis: readonly WireApi[];
  /**
   * Endpoints forwarded unmetered (they cost nothing or are read-only): attributed to the user and
   * logged. Every path that is neither here nor a metered API is refused, never forwarded.
   */
  readonly passthrough: readonly PassthroughRoute[];
  /** Headers that carry the organisation's key upstream. */
  authHeaders(apiKey: string): Record<string, string>;
  /** The provider's error body for an error the bridge itself raises. */
  errorBody(status: number, code: string, message: string): unknown;
}
