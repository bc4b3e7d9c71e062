import type { IncomingHttpHeaders } from 'node:http';
import type { ApiName, InterceptionError, ToolCallRecord } from '../../shared/interception';
import type { Usage } from '../../shared/usage';

export type JsonObject = Record<string, unknown>;

/** What the bridge learns from a request body before sending it on. */
export interface RequestFacts {
  model: string | null;
  /** The text of the last user message: what the developer asked. */
  prompt: string | null;
  /** A session id carried in the body (headers are the adapter's to read too). */
  sessionId: string | null;
}

/** What the bridge learns from a response, whole or streamed. */
export interface ResponseFacts {
  usage: Usage;
  toolCalls: ToolCallRecord[];
  /** The model that answered, when the response names it. */
  model: string | null;
  /** An error the provider reported (an error body, or an error event mid-stream). */
  error: InterceptionError | null;
}

export interface SseEvent {
  event: string | undefined;
  data: string;
}

/** Fed every SSE event of a streamed response as it passes; never holds the whole stream. */
export interface StreamMeter {
  onEvent(ev: SseEvent, at: Date): void;
  result(): ResponseFacts;
}

/**
 * One wire API family behind one object. Shared proxy code talks only to this interface and never
 * branches on a provider's name; adding a provider means adding one folder under providers/.
 */
export interface ProviderAdapter {
  /** Recorded as the interception's `provider`; also the config key of its upstream. */
  readonly id: string;
  /** Where the bridge mounts it: `/anthropic/v1/messages` → upstream `{base}/v1/messages`. */
  readonly prefix: string;
  /** The metered API a path is, or null when the request is only passed through. */
  endpoint(method: string, path: string): ApiName | null;
  /** Headers that carry the organisation's key upstream. */
  authHeaders(apiKey: string): Record<string, string>;
  describeRequest(api: ApiName, body: JsonObject, headers: IncomingHttpHeaders): RequestFacts;
  /** The bytes to send upstream; adapters that need nothing changed return `raw`. */
  prepareBody(api: ApiName, body: JsonObject, raw: Buffer): Buffer;
  fromJson(api: ApiName, json: unknown, at: Date): ResponseFacts;
  createStreamMeter(api: ApiName): StreamMeter;
  /** The provider's error shape for an error the bridge itself raises. */
  errorBody(status: number, message: string): unknown;
  /** The same, as an SSE event written into a stream whose headers are already sent. */
  streamError(status: number, message: string): string;
  /** The provider's request id header, for the record. */
  readonly requestIdHeader: string;
}
