import type {
  ApiName,
  BilledTo,
  CacheFingerprint,
  CaptureLevel,
  Interception,
  InterceptionError,
  ToolCallRecord,
} from '../../shared/interception';
import type { Usage } from '../../shared/usage';
import type { Principal } from './principal';

/**
 * The name a provider's own price data knows a request by, when it prices it apart from the model
 * it is recorded as: a Bedrock request is recorded as the Anthropic model, and priced from AWS's
 * entries for the id it went out with (`us.anthropic.…` regional profiles cost 10% more than
 * `global.` ones for the newer models).
 */
export interface PriceAs {
  readonly priceId: string;
  readonly model: string;
}

/** What the bridge learns from a request body before sending it on. */
export interface RequestFacts {
  model: string | null;
  /** Where the request is priced from when not `model`'s entry (ProviderAdapter.priceAs). */
  priceAs?: PriceAs;
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
  /**
   * How many answers the request asks for (`n`, `candidateCount`) when it has no output cap and
   * asks for more than one: the reservation counts the default cap that many times.
   */
  answers?: number;
  /** Tool results the client sends back in this request. */
  toolResults: { callId: string; isError: boolean; content: string }[];
  /** The messages (or input items) added since the model's last turn. */
  newMessages: unknown[];
  /** What the prompt cache depends on; absent where the request uses no cache. */
  cache?: CacheFacts;
  /**
   * The stored response whose context this request continues (Responses' `previous_response_id`):
   * the bridge checks that it is the caller's own before sending it (server/audit/response-owners.ts).
   */
  continues?: string;
  /**
   * The stored conversation this request reads and appends to (Responses' `conversation`, its id or
   * `{"id": …}`): no bridge route creates one, so only an admin's goes upstream
   * (server/audit/response-owners.ts).
   */
  conversation?: string;
  /**
   * Stored items this request's input names by id alone (Responses' `item_reference`, a reasoning
   * item without its `encrypted_content`), which the provider reads from storage: each must be an
   * output item of one of the caller's own stored answers (server/audit/response-owners.ts).
   */
  references?: string[];
  /**
   * Secrets redacted from the strings above that the bridge keeps as they came (the model name, the
   * session id, tool results' call ids): the record lists them with its own redactions.
   */
  redactions?: Interception['redactions'];
}

/** A request's cache fingerprint, and the hash of any prefix of its messages (kept only while it runs). */
export interface CacheFacts {
  fingerprint: CacheFingerprint;
  /**
   * The hash of its first k messages (undefined past the end), to tell whether an earlier turn's
   * cached prefix is intact. Computed when asked: only a suspected cache break asks.
   */
  prefixAt: PrefixAt;
}

/** The hash of a request's first k messages (`CacheFacts.prefixAt`). */
export type PrefixAt = (k: number) => string | undefined;

/**
 * The longest stored-state id the bridge records as someone's (a response's `resp_…`, an output
 * item's `msg_…`). OpenAI's are ~50 characters; an openai-compatible upstream is anyone's server,
 * and each id keys the store's ownership lookup (server/audit/response-owners.ts).
 */
export const MAX_STORED_ID_CHARS = 256;

/** Whether an id is one the bridge records as its caller's (and so one a lookup can find). */
export function ownableId(id: string): boolean {
  return id.length > 0 && id.length <= MAX_STORED_ID_CHARS;
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
  /** The usage was raised to what the stream showed was used (server/proxy/usage-floor.ts). */
  usageEstimated?: boolean;
  /**
   * The id the provider stored the answer under (a Responses `resp_…`), when it names one: recorded
   * as the caller's, so only they may read, delete or continue it (server/audit/response-owners.ts).
   */
  responseId?: string;
  /**
   * The ids of the stored answer's output items, when the provider stored it (not `store: false`):
   * recorded as the caller's, so only they may name one in a later request's input. Each ownableId.
   */
  responseItems?: string[];
  /**
   * The tier the provider says served the request (OpenAI's answer `service_tier`: `default`,
   * `flex`, `priority`, `scale`), when it names one.
   */
  serviceTier?: string;
}

/** What is known of an interception when its request is accepted. */
export interface InterceptionStart {
  id: string;
  principal: Principal;
  provider: string;
  api: ApiName;
  client: string;
  request: RequestFacts;
  startedAt: Date;
  /** Fastify's id for the HTTP request, to join the log line with others. */
  requestId?: string;
  /** What the record keeps of the conversation (default `prompt`). */
  capture?: CaptureLevel;
  /** `user`: the request carries the user's own provider credential (absent: the organisation pays). */
  billedTo?: BilledTo;
  /** The model alias the client asked for; `request.model` is the real model it stands for. */
  alias?: string;
}
