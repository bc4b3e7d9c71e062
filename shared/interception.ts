import type { Usage } from './usage';

/** The wire APIs the bridge meters. */
export type ApiName = 'messages' | 'chat.completions' | 'responses';

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
}

export interface InterceptionError {
  /** Provider error type (`overloaded_error`) or bridge code (`upstream_timeout`). */
  type: string;
  message: string;
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
  prompt: string | null;
  toolCalls: ToolCallRecord[];
  error: InterceptionError | null;
  /** The provider's request id (`request-id` / `x-request-id`), for support tickets. */
  upstreamRequestId: string | null;
  /** Secrets blanked out before the record was stored: what kind, in which field, how many. Never the values. */
  redactions: { kind: string; field: string; count: number }[];
  /** Tamper evidence: the previous record's `hash` in this store, and SHA-256 over that and this record. */
  prevHash?: string;
  hash?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
