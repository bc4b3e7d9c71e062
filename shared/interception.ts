import type { ToolPolicyMark } from './tool-policy';
import type { Usage } from './usage';

/** The wire APIs the bridge meters. */
export type ApiName = 'messages' | 'chat.completions' | 'responses' | 'generateContent';

/**
 * Who pays the provider for a request: the organisation (its instance's key) or the user (their
 * own key or subscription, passed through with `X-AIBridge-Key`; docs/routing.md).
 */
export type BilledTo = 'organisation' | 'user';

/** How an interception ended. */
export type InterceptionStatus = 'ok' | 'error' | 'client_aborted';

export interface ToolCallRecord {
  /** The provider's id for the call (tool_use id, call_id). */
  id: string;
  name: string;
  /** MCP server the tool belongs to (from an `mcp__<server>__<tool>` name), else null. */
  server: string | null;
  /** Arguments, parsed as JSON where they are JSON, else the raw string. */
  input: unknown;
  /** True when the bridge injected and ran the tool itself. */
  injected: boolean;
  /** ISO 8601 time the model started emitting the call. */
  at: string;
  /** When the agent reported the call's result (on a later request), whether it was an error, and in which interception. */
  result?: { at: string; isError: boolean; interceptionId: string } | null;
  /** Injected calls only: how the bridge ran the MCP tool (docs/mcp.md). */
  execution?: ToolExecution;
  /** A tool-policy rule matched the call (docs/governance.md): `deny` (the client never saw it) or `audit` (flagged). */
  policy?: ToolPolicyMark;
}

/** How the bridge ran an injected MCP tool call for the user. */
export interface ToolExecution {
  /** The tool's name on its MCP server (the model sees it under the bridge's prefix). */
  tool: string;
  /**
   * `not_run`: the model also called the client's tools, or the round limit was reached.
   * `cancelled`: stopped while it ran because the client left or the bridge was shutting down.
   */
  outcome: 'ok' | 'error' | 'timeout' | 'not_run' | 'cancelled';
  /** ISO 8601 time the bridge sent the call to the MCP server. */
  startedAt: string;
  durationMs: number;
  /** UTF-8 bytes of the result text the model received (after the size cap). */
  resultBytes: number;
  /** Why the call failed or was not run; null when it succeeded. */
  error: string | null;
}

/**
 * A tool call an agent made through the bridge's MCP gateway (`<bridge>/mcp`, docs/mcp.md): not
 * part of any model request, so it is stored on its own, one record per call.
 */
export interface GatewayToolCall {
  id: string;
  /** ISO 8601 time the bridge received the call. */
  at: string;
  userId: string;
  userEmail: string;
  team: string | null;
  keyId: string;
  /** The MCP client's name from its `initialize` (`clientInfo.name`), `unknown` without one. */
  client: string;
  /** The gateway session (`Mcp-Session-Id`), null for clients that keep none. */
  sessionId: string | null;
  /**
   * What the agent did: absent for a tool call (`tools/call`); `resource` for a `resources/read`,
   * `prompt` for a `prompts/get`.
   */
  kind?: 'resource' | 'prompt';
  /**
   * The name the client called (`<server>__<tool>`); for a resource the URI it read
   * (`aibridge://<server>/<the URI, encoded>`), for a prompt `<server>__<prompt>`.
   */
  name: string;
  server: string;
  /** The tool's own name on its server (a resource's own URI, a prompt's own name). */
  tool: string;
  /** Arguments, redacted like any recorded input (a prompt's arguments; `{}` for a resource). */
  input: unknown;
  /**
   * `no_credential`: the user has not connected the server yet (they were told how); `denied`: a
   * tool-policy rule blocked it (docs/governance.md), the client got a tool result saying so;
   * `too_many_calls`: the user already had as many calls running as they may
   * (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER), so it was not run and the client was told to retry.
   */
  outcome: 'ok' | 'error' | 'timeout' | 'cancelled' | 'no_credential' | 'denied' | 'too_many_calls';
  /** The tool-policy rule that denied or flagged the call, when one matched. */
  policy?: ToolPolicyMark;
  durationMs: number;
  /** UTF-8 bytes of the result as JSON. */
  resultBytes: number;
  /** Why the call failed; null when it succeeded. */
  error: string | null;
}

/** A tool result the client sent back, linking a call of an earlier turn to what came of it. */
export interface ToolResultRecord {
  callId: string;
  isError: boolean;
  /** The result text, only with capture level `full` (redacted, capped). */
  content: string | null;
  /** Length of the whole result, whether or not its text is kept. */
  contentLength: number;
}

/** What a record keeps of the conversation: `none` (metadata and usage), `prompt` (the default), `full`. */
export type CaptureLevel = 'none' | 'prompt' | 'full';

export interface InterceptionError {
  /** Provider error type (`overloaded_error`) or bridge code (`upstream_timeout`). */
  type: string;
  message: string;
}

/**
 * Short hashes of what a request's prompt cache depends on. `explicit`: the client marks cache
 * points (Anthropic `cache_control`), and only the prefix up to them is cached; `automatic`: the
 * provider caches every prompt's prefix (OpenAI).
 */
export interface CacheFingerprint {
  mode: 'explicit' | 'automatic';
  /** Hash of the tool list. */
  tools: string;
  /** Hash of the system prompt (instructions). */
  system: string;
  /** Messages (input items) up to the cache point, and their hash (cache markers left out). */
  messages: number;
  prefix: string;
  /** How long the cache lives unused: 300 s by default, 3600 s with `ttl: "1h"`. */
  ttlSeconds: number;
  /**
   * What the hashes are of: 2, the bridge's length-prefixed encoding of each part; absent (records
   * written before it), JSON.stringify of each part. Hashes of different versions never match.
   */
  v?: number;
}

/** Why a turn's cache was rewritten, judged against the session's previous turn. */
export type CacheBreakCause =
  | 'tools_changed'
  | 'system_changed'
  | 'model_changed'
  | 'ttl_expired'
  | 'context_edited'
  | 'unknown';

export const CACHE_BREAK_CAUSES: readonly CacheBreakCause[] = [
  'tools_changed',
  'system_changed',
  'model_changed',
  'ttl_expired',
  'context_edited',
  'unknown',
];

export interface CacheBreak {
  cause: CacheBreakCause;
  /** What the turn cost over what it would have cost had the previous turn's cache been read; null when the price is unknown. */
  excessUsd: number | null;
  /** Tokens that could have been read from the cache and were not. */
  tokens: number;
  /** The session's previous turn, whose cache was lost. */
  previousInterceptionId: string;
}

/**
 * An upstream attempt that failed before the one whose answer the client got (routes and
 * failover, docs/routing.md): the target tried, the key it carried, and why it was left.
 */
export interface InterceptionAttempt {
  /** The instance tried. */
  provider: string;
  /** The model id it was asked for there (as priced and recorded). */
  model: string | null;
  /** The pool key's name (never the secret); null: the instance's only credential, or none was obtained. */
  keyName: string | null;
  /** The upstream's HTTP status; 0 when no answer came (connection refused, timeout, skipped). */
  httpStatus: number;
  error: InterceptionError | null;
  startedAt: string;
  endedAt: string;
}

/** One request to a model endpoint, as recorded by the bridge. */
export interface Interception {
  id: string;
  /** Position in the store's append order; newer records have higher numbers. */
  seq: number;
  userId: string;
  userEmail: string;
  team: string | null;
  keyId: string;
  provider: string;
  api: ApiName;
  model: string | null;
  /** The model alias the client asked for (docs/routing.md); `model` is the real model it stands for. */
  alias?: string;
  client: string;
  sessionId: string | null;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  status: InterceptionStatus;
  /** HTTP status the client received (0 when the client went away before headers). */
  httpStatus: number;
  streamed: boolean;
  usage: Usage;
  /** What the request cost in USD at the prices in force; null when the model's price is unknown (never a silent $0). */
  costUsd: number | null;
  priceKnown: boolean;
  /**
   * `user`: the request went upstream with the user's own credential, so its cost is theirs: kept
   * out of the organisation's spend and budgets, reported apart. Absent: the organisation's.
   */
  billedTo?: BilledTo;
  /**
   * Absent: the price data (or an admin override). `free`: a self-hosted instance, $0 on purpose;
   * `instance`: the instance's own price table; `priority-tier`: the provider served the request at
   * OpenAI's priority tier (its answer's `service_tier`), billed at twice the standard price;
   * `flex-tier`: served at OpenAI's Flex processing, billed at half the standard price.
   */
  costSource?: 'free' | 'instance' | 'priority-tier' | 'flex-tier';
  /**
   * `true`: the provider's usage did not (all) reach the bridge (the client left a stream before its
   * usage event, or the provider sent none), so `usage` is a floor from what was relayed: the body's
   * size as input, a token per content event as output (docs/spend.md). Absent: as the provider reported.
   */
  usageEstimated?: true;
  prompt: string | null;
  toolCalls: ToolCallRecord[];
  error: InterceptionError | null;
  /** The provider's request id (`request-id` / `x-request-id`), for support tickets. */
  upstreamRequestId: string | null;
  /**
   * The id the provider stored the answer under (OpenAI Responses' `resp_…`), when it named one:
   * the record makes it this user's, and only they may read, delete or continue it through the
   * bridge (docs/security.md). Absent: the answer named none.
   */
  responseId?: string;
  /**
   * The ids of the stored answer's output items (`msg_…`, `rs_…`, `fc_…`), when the provider stored
   * it (not `store: false`): the record makes them this user's, and only they may name one in a
   * later request's `input` (`item_reference`, a bare reasoning item; docs/security.md). At most
   * 512, each at most 256 characters. Absent: the answer stored none.
   */
  responseItems?: string[];
  /** Secrets blanked out before the record was stored: what kind, in which field, how many. Never the values. */
  redactions: { kind: string; field: string; count: number }[];
  /** The level this record was captured at. */
  capture?: CaptureLevel;
  /** Results of earlier tool calls that this request carried back to the model. */
  toolResults?: ToolResultRecord[];
  /** Capture `full`: the request's new messages (since the model's last turn), redacted and capped. */
  messages?: unknown;
  /** Capture `full`: the model's text and thinking, redacted and capped. */
  output?: { text: string; thinking: string } | null;
  /** What the request's prompt cache depended on (hashes only), to compare the session's next turn with. */
  cacheKey?: CacheFingerprint;
  /** Set when this turn rewrote a cache the session's previous turn had built (docs/governance.md). */
  cacheBreak?: CacheBreak | null;
  /**
   * The attempts that failed before the one recorded here (failover, docs/routing.md), in order;
   * absent when the first attempt's answer reached the client. `provider` and `model` above are
   * the target that served (or whose error the client got), and what cost and budgets use.
   */
  attempts?: InterceptionAttempt[];
  /** The pool key that carried the recorded attempt (its name, never the secret); absent: the instance's only credential. */
  keyName?: string;
  /** Tamper evidence: the previous record's `hash` in this store, and SHA-256 over that and this record. */
  prevHash?: string;
  hash?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
