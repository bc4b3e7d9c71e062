import type { ToolPolicyMark } from './tool-policy';
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
  /** `not_run`: the model also called the client's tools, or the round limit was reached. */
  outcome: 'ok' | 'error' | 'timeout' | 'not_run';
  /** ISO 8601 time the bridge sent the call to the MCP server. */
  startedAt: string;
  durationMs: number;
  /** UTF-8 bytes of the result text the model received (after the size cap). */
  resultBytes: number;
  /** Why the call failed or was not run; null when it succeeded. */
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
  /** Absent: the price data (or an admin override). `free`: a self-hosted instance, $0 on purpose; `instance`: the instance's own price table. */
  costSource?: 'free' | 'instance';
  prompt: string | null;
  toolCalls: ToolCallRecord[];
  error: InterceptionError | null;
  /** The provider's request id (`request-id` / `x-request-id`), for support tickets. */
  upstreamRequestId: string | null;
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
  /** Tamper evidence: the previous record's `hash` in this store, and SHA-256 over that and this record. */
  prevHash?: string;
  hash?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
