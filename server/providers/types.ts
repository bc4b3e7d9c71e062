import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import type { ApiName } from '../../shared/interception';
import type { Cancellation } from '../core/cancellation';
import type { PriceAs, RequestFacts, ResponseFacts } from '../core/facts';
import type { ToolInjection } from './injection';
import type { ModelListing } from './model-listing';
import type { ModelNaming } from './model-naming';
import type { ToolHold } from './tool-hold';
import type { EventVerdict, JsonObject, SseEvent } from './wire';

/** The wire primitives live apart so that injection.ts, which this file names, need not import it back. */
export { DROP, type EventVerdict, FORWARD, type JsonObject, type SseEvent } from './wire';
/** The request and response facts are part of the adapter contract; they live in core so the recorder and stores need no provider code. */
export type { RequestFacts, ResponseFacts };

/**
 * Fed every SSE event of a streamed response as it passes; never holds the whole stream. Its
 * verdicts matter only when the request was prepared with `rewriteStream` (the bridge asked the
 * provider for something the client did not, and must hide it again); otherwise bytes pass as sent.
 */
export interface StreamMeter {
  onEvent(ev: SseEvent, at: Date): EventVerdict;
  result(): ResponseFacts;
  /**
   * The id the provider stores the answer under, once the stream named it (Responses'
   * `response.created`), or null: noted as the caller's at once, since a client may continue it as
   * soon as `response.completed` arrives, before the stream closes (server/audit/response-owners.ts).
   */
  responseId?(): string | null;
  /**
   * The stored answer's output item ids once the stream has completed it (its terminal event), or
   * null before: noted as the caller's then, for the same reason (an empty list: none stored).
   */
  completedItems?(): string[] | null;
}

/** The request as it goes upstream. */
export interface PreparedRequest {
  bytes: Buffer;
  /** Relay the stream event by event, applying the meter's verdicts, instead of byte for byte. */
  rewriteStream: boolean;
  /** Keep the model's text and thinking (capture level `full`). */
  captureOutput?: boolean;
}

/** A metered request as the exchange would send it, for an adapter that sends it itself. */
export interface UpstreamCall {
  /** The canonical path below the prefix, with the client's query (what `upstreamUrl` takes). */
  readonly target: string;
  /** The prepared body, in the client's wire format. */
  readonly bytes: Buffer;
  /** The client's headers as they go upstream (its bridge credential removed). */
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly dispatcher: Dispatcher;
  /** Cancels the request (the client left, the bridge is stopping); undici takes either. */
  readonly signal: AbortSignal | Cancellation;
}

/** One metered wire API: its endpoint, how to read its requests, responses and streams. */
export interface WireApi {
  readonly name: ApiName;
  readonly method: 'POST';
  /** Path below the provider's prefix, e.g. `/v1/messages`; `:model:generateContent` is a parameter with a fixed method after it. */
  readonly path: string;
  describeRequest(body: JsonObject, headers: IncomingHttpHeaders): RequestFacts;
  /**
   * Why the bridge cannot take this request as it is (a parameter whose cost it could not meter),
   * as a message for `400 unsupported_parameter`; absent or null: it can. `query` is the client's
   * query string, `?` included, or empty.
   */
  unsupported?(body: JsonObject, query: string): string | null;
  /**
   * The bytes to send upstream; APIs that need nothing changed return `raw`. `query` is the
   * client's query string (`?` included) or empty: Azure's `api-version` says what a body may hold.
   */
  prepare(body: JsonObject, raw: Buffer, query?: string): PreparedRequest;
  fromJson(json: unknown, at: Date): ResponseFacts;
  createStreamMeter(prepared: PreparedRequest): StreamMeter;
  /** An error as an SSE event, for a stream whose headers are already sent. */
  streamError(status: number, code: string, message: string): string;
  /**
   * SSE event names that open a stream without committing to an answer (Responses'
   * `response.created`): a stream with another target behind it is held past them, so an error
   * right after them still fails over (docs/routing.md). Absent: the first event commits.
   */
  readonly streamPreamble?: readonly string[];
  /** Offering tools the bridge runs itself (MCP, docs/mcp.md); absent: the API's requests are never given any. */
  readonly injection?: ToolInjection;
  /** Holding and replacing the client's tool calls a policy denies (docs/governance.md); absent: never held. */
  readonly toolHold?: ToolHold;
  /** Where requests and answers name the model, for model aliases; absent: the API's requests are never aliased. */
  readonly modelNaming?: ModelNaming;
}

/** An unmetered endpoint the bridge forwards: `:name` segments match any one segment. */
export interface PassthroughRoute {
  readonly methods: readonly ('GET' | 'HEAD' | 'POST' | 'DELETE')[];
  readonly path: string;
  /** Why it is safe to forward unmetered, for docs/api.md. */
  readonly why: string;
  /**
   * The `:name` segment that names a stored response (OpenAI's `resp_…`, kept under the
   * organisation's key): forwarded only for the user who created it (docs/security.md).
   */
  readonly storedResponse?: string;
  /**
   * A body field that may name a stored response to build on (`previous_response_id` in Responses'
   * token count, which counts that conversation's context too): forwarded only when the response
   * is the caller's own, as `storedResponse` (docs/security.md).
   */
  readonly continuesField?: string;
  /**
   * A body field that may name a stored conversation (Responses' `conversation`, its id or
   * `{"id": …}`, in the token count): forwarded only for an admin, as on the metered route, since
   * no bridge route creates one (docs/security.md).
   */
  readonly conversationField?: string;
  /**
   * A body field holding Responses input items, which may name stored items by id alone
   * (`item_reference`, a reasoning item without `encrypted_content`): forwarded only when each is an
   * output item of the caller's own stored answers, as on the metered route (docs/security.md).
   */
  readonly inputField?: string;
  /**
   * The answer is a model answer in a metered API's shape (a stored Response, read back by id):
   * while a tool-call deny rule applies to the caller it is read whole and its denied calls are
   * replaced as on the metered route (this hold's rewriteJson), and its streamed form is refused.
   * Passed through as it came, a call the metered answer had replaced could be read back whole.
   */
  readonly answerHeld?: ToolHold;
}

/**
 * One provider instance behind one object: where it is mounted, how its key is sent, its error
 * shape, and the wire APIs the bridge meters there. Shared proxy code talks only to this interface
 * and never branches on a provider's name; a family (family.ts) creates one per instance.
 */
export interface ProviderAdapter {
  /** The instance name: recorded as the interception's `provider`, the key of its breaker, budgets and prices. */
  readonly id: string;
  /** The family (`anthropic`, `openai`, ...); for logs and docs only, never branched on. */
  readonly type: string;
  /** Where the bridge mounts it: `{prefix}/X` goes to `upstreamUrl(/X)`. */
  readonly prefix: string;
  /** The provider's request-id response header, kept on the record. */
  readonly requestIdHeader: string;
  readonly apis: readonly WireApi[];
  /**
   * Endpoints forwarded unmetered (they cost nothing or are read-only): attributed to the user and
   * logged. Every path that is neither here nor a metered API is refused, never forwarded.
   */
  readonly passthrough: readonly PassthroughRoute[];
  /** Whether the instance can serve (has its key or credential); otherwise requests get `provider_not_configured`. */
  readonly configured: boolean;
  /**
   * Whether the provider keeps stored state (Responses' stored responses and conversations) to the
   * key that made it (OpenAI, Azure OpenAI). Only then does a request sent with the user's own key
   * go without the bridge's ownership check: a server that takes any key (a self-hosted
   * openai-compatible one) would hand another member's state to whoever names it.
   */
  readonly keyScopesStoredState?: boolean;
  /** The upstream URL of a canonical path below the prefix, with the client's query. */
  upstreamUrl(target: string): string;
  /**
   * Headers that carry the organisation's credential upstream; may fetch a token (then a promise;
   * a static key's are returned as they are). `key`: one key of the instance's pool
   * (server/routing/key-pool.ts) in place of its own `apiKey`.
   */
  authHeaders(key?: string): Record<string, string> | Promise<Record<string, string>>;
  /**
   * The provider's error body for an error the bridge itself raises; `headers`: the error's own
   * (its `retry-after`, a budget's reset), for a shape that carries them in the body (Google's).
   */
  errorBody(
    status: number,
    code: string,
    message: string,
    headers?: Readonly<Record<string, string>>,
  ): unknown;
  /**
   * The model a request is priced and recorded as, when the instance knows better than the body
   * (a deployment name mapped to its model); absent: the body's model.
   */
  modelFor?(path: string, model: string | null): string | null;
  /**
   * The provider's own price-data entry a request is priced from, when it is not the recorded
   * model's (Bedrock: AWS's entry for the inference profile, whose geography sets the price).
   */
  priceAs?(path: string, model: string | null): PriceAs | undefined;
  /**
   * A query parameter the family's clients may carry their key in (Google's `?key=`): removed from
   * the URL before anything forwards or logs it, and read as the bridge key as if sent in `header`.
   */
  readonly credentialQuery?: { readonly param: string; readonly header: string };
  /**
   * Why the client's query (`?` included, or empty) must not go upstream, on any route of the
   * family, metered or passthrough: a message for `400 unsupported_parameter`; absent or null: it may.
   */
  queryRefusal?(query: string): string | null;
  /**
   * Sends a metered request itself, for an upstream whose wire differs from the client's (a signed
   * request to another path, a binary stream re-framed as SSE); the answer must be in the client's
   * wire format. The POST routes of `passthrough` go through it too (`call.target` tells which).
   * Absent: the prepared bytes are POSTed to `upstreamUrl(target)` with `authHeaders`.
   */
  send?(call: UpstreamCall): Promise<Dispatcher.ResponseData>;
  /** Rewrites an upstream error body into the client's error shape; absent: relayed as sent. */
  clientErrorBody?(status: number, body: Buffer): Buffer | undefined;
  /**
   * The provider's model-list endpoints (`GET /v1/models`, `GET /v1/models/{id}`), answered by
   * the bridge itself with the models the caller may use (server/routing/model-catalog.ts);
   * absent: the instance has no model list of its own.
   */
  readonly modelListing?: ModelListing;
}
