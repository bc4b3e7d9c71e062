import type { ApiName, InterceptionStatus } from './interception';
import type { Alert } from './spend';
import type { Usage } from './usage';

/**
 * The live event protocol (`GET /api/v1/events`), typed once for the server, the extension and the
 * tests. A change that breaks a reader bumps PROTOCOL_VERSION.
 */
export const PROTOCOL_VERSION = 1;

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
}

export interface BudgetAlertEvent {
  type: 'budget.alert';
  alert: Alert;
}

export interface AlertEvent {
  type: 'alert';
  alert: Alert;
}

export type BridgeEvent =
  | HelloEvent
  | InterceptionStartedEvent
  | InterceptionProgressEvent
  | InterceptionEndedEvent
  | ToolCallEvent
  | BudgetAlertEvent
  | AlertEvent;
