import { type CloseReason, closeReasonOf } from './errors';
import type { ApiName, BilledTo, CacheBreakCause, GatewayToolCall, InterceptionStatus } from './interception';
import type { Alert } from './spend';
import type { ToolPolicyAction } from './tool-policy';
import type { Usage } from './usage';

/**
 * The live event protocol (`GET /api/v1/events`), typed once for the server, the extension and the
 * tests. A change that breaks a reader bumps PROTOCOL_VERSION.
 */
export const PROTOCOL_VERSION = 1;

/** Where the live events are served (a WebSocket upgrade of a GET). */
export const EVENTS_PATH = '/api/v1/events';

/**
 * The subprotocol a client offers (`Sec-WebSocket-Protocol`). Browsers, which cannot set an
 * `Authorization` header on a WebSocket, also offer their key as `aibridge.key.<key>`; the server
 * selects `aibridge.v1` and never echoes the key.
 */
export const EVENTS_SUBPROTOCOL = 'aibridge.v1';
export const KEY_SUBPROTOCOL_PREFIX = 'aibridge.key.';

/** Most `interception.progress` events per stream per second. */
export const PROGRESS_PER_SECOND = 4;

/** Longest tool-call argument preview (`tool.call` events, the extension's tree). */
export const INPUT_PREVIEW_CHARS = 200;

/** Tool-call arguments as JSON text, cut to INPUT_PREVIEW_CHARS. */
export function toolInputPreview(input: unknown): string {
  let text: string;
  try {
    text = typeof input === 'string' ? input : (JSON.stringify(input) ?? '');
  } catch {
    text = String(input);
  }
  return text.length > INPUT_PREVIEW_CHARS ? `${text.slice(0, INPUT_PREVIEW_CHARS - 1)}…` : text;
}

/** The close codes are part of the error registry (shared/errors.ts); readers import them from here too. */
export { CLOSE_CODES, type CloseReason, closeReasonOf } from './errors';

/**
 * Sent just before the server closes a socket on purpose, with what a close reason (at most 123
 * bytes of text) cannot carry reliably: a full message and, for `rateLimited`, when to come back. Not an event: readers that do not know it ignore it, and the close code and reason
 * that follow are the same as without it.
 */
export interface CloseNotice {
  type: 'closing';
  /** The WebSocket close code that follows (CLOSE_CODES). */
  closeCode: number;
  /** The close code's name in CLOSE_CODES. */
  reason: CloseReason;
  message: string;
  /** Seconds to wait before reconnecting, when the server says (`rateLimited`). */
  retryAfter?: number;
}

/** Reads a close notice off the wire; undefined for anything else. */
export function parseCloseNotice(text: string): CloseNotice | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const n = v as Partial<Record<keyof CloseNotice, unknown>>;
  if (n.type !== 'closing' || typeof n.closeCode !== 'number' || typeof n.message !== 'string')
    return undefined;
  if (closeReasonOf(n.closeCode) === undefined || closeReasonOf(n.closeCode) !== n.reason) return undefined;
  if (n.retryAfter !== undefined && (typeof n.retryAfter !== 'number' || !(n.retryAfter >= 0)))
    return undefined;
  return v as CloseNotice;
}

/** Who and what an interception event is about. */
export interface InterceptionRef {
  interceptionId: string;
  userId: string;
  userEmail: string;
  team: string | null;
  provider: string;
  api: ApiName;
  model: string | null;
  client: string;
  sessionId: string | null;
}

export interface HelloEvent {
  type: 'hello';
  protocolVersion: number;
  user: { id: string; email: string; role: string; team: string | null };
  serverTime: string;
  /** The server pings this often; a client that hears nothing for twice as long may assume the peer is dead. */
  heartbeatMs: number;
}

export interface InterceptionStartedEvent extends InterceptionRef {
  type: 'interception.started';
  at: string;
}

export interface InterceptionProgressEvent extends InterceptionRef {
  type: 'interception.progress';
  at: string;
  usage: Usage;
}

export interface InterceptionEndedEvent extends InterceptionRef {
  type: 'interception.ended';
  at: string;
  usage: Usage;
  costUsd: number | null;
  priceKnown: boolean;
  status: InterceptionStatus;
  durationMs: number;
  /** `user`: sent with the user's own provider credential, so `costUsd` is theirs, not the organisation's spend. Absent: the organisation's. */
  billedTo?: BilledTo;
}

export interface ToolCallEvent extends InterceptionRef {
  type: 'tool.call';
  at: string;
  callId: string;
  name: string;
  server: string | null;
  injected: boolean;
  /** The arguments as JSON text, cut to a short preview. */
  inputPreview: string;
  /** Tells this apart from a {@link GatewayToolCallEvent}; absent on older bridges. */
  via?: 'client' | 'injected';
}

/**
 * A tool call an agent made through the bridge's MCP gateway (`<bridge>/mcp`): it belongs to no
 * interception, so it carries who and which client itself. Same `type` as a model's tool call;
 * `via: "gateway"` tells them apart.
 */
export interface GatewayToolCallEvent {
  type: 'tool.call';
  via: 'gateway';
  at: string;
  callId: string;
  /** Absent for a tool call; `resource` or `prompt` for a read (GatewayToolCall.kind). */
  kind?: 'resource' | 'prompt';
  /** The name the client called, `<server>__<tool>` (a resource: the URI it read). */
  name: string;
  server: string;
  injected: false;
  inputPreview: string;
  userId: string;
  userEmail: string;
  team: string | null;
  client: string;
  /** The gateway session (`Mcp-Session-Id`), null without one. */
  sessionId: string | null;
  outcome: GatewayToolCall['outcome'];
  durationMs: number;
}

/**
 * A tool-policy rule matched a tool call (docs/governance.md): `deny`, the client got a message
 * instead of the call; `audit`, the call went through, flagged. Sent after the interception ends.
 */
export interface ToolPolicyEvent extends InterceptionRef {
  type: 'tool.policy';
  at: string;
  callId: string;
  /** The tool's name as the model called it. */
  tool: string;
  /** The id of the rule that matched. */
  rule: string;
  action: ToolPolicyAction;
  /** The command, path or arguments, in one line of at most 200 characters (empty at capture `none`). */
  summary: string;
}

/** A turn of an agent session rewrote the prompt cache its previous turn had built (docs/governance.md). */
export interface CacheBreakEvent extends InterceptionRef {
  type: 'cache.break';
  at: string;
  cause: CacheBreakCause;
  /** What the break cost over a cached turn; null when the model's price is unknown. */
  excessUsd: number | null;
  /** Tokens rewritten that could have been read from the cache. */
  tokens: number;
  previousInterceptionId: string;
}

export interface BudgetAlertEvent {
  type: 'budget.alert';
  alert: Alert;
}

export interface AlertEvent {
  type: 'alert';
  alert: Alert;
}

/** An MCP server whose tools the bridge could not offer (down, refused the credentials): it was skipped. */
export interface McpWarningEvent {
  type: 'mcp.warning';
  at: string;
  server: string;
  message: string;
}

export type BridgeEvent =
  | HelloEvent
  | InterceptionStartedEvent
  | InterceptionProgressEvent
  | InterceptionEndedEvent
  | ToolCallEvent
  | ToolPolicyEvent
  | CacheBreakEvent
  | GatewayToolCallEvent
  | BudgetAlertEvent
  | AlertEvent
  | McpWarningEvent;

export type BridgeEventType = BridgeEvent['type'];

/** Every event type (a Record, so adding a type above without listing it here fails to compile). */
const EVENT_TYPE_SET: Record<BridgeEventType, true> = {
  hello: true,
  'interception.started': true,
  'interception.progress': true,
  'interception.ended': true,
  'tool.call': true,
  'tool.policy': true,
  'cache.break': true,
  'budget.alert': true,
  alert: true,
  'mcp.warning': true,
};

export function isEventType(s: string): s is BridgeEventType {
  return Object.hasOwn(EVENT_TYPE_SET, s);
}

/** Reads one message off the wire; undefined for anything that is not a known event (newer servers may add types). */
export function parseEvent(text: string): BridgeEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const type = (v as { type?: unknown }).type;
  return typeof type === 'string' && isEventType(type) ? (v as BridgeEvent) : undefined;
}
