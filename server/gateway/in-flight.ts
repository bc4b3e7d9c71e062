import type { ToolPolicyMark } from '../../shared/tool-policy';
import type { Principal } from '../core/principal';
import type { MemberWrites } from '../identity/member-writes';
import type { McpHub } from '../mcp/hub';
import type { GatewayCallLog } from './call-log';
import type { CallSlots } from './call-slots';

/** Calls in flight on this replica, so a `notifications/cancelled` (its own POST) finds its call. */
export class InFlightCalls {
  private readonly calls = new Map<string, AbortController>();

  /** `onSize`: told the number of calls running whenever it changes (a gauge). */
  constructor(private readonly onSize: (n: number) => void = () => undefined) {}

  private key(userId: string, sessionId: string | null, requestId: string | number): string {
    return `${userId}\0${sessionId ?? ''}\0${typeof requestId}:${requestId}`;
  }

  add(userId: string, sessionId: string | null, requestId: string | number, c: AbortController): () => void {
    const k = this.key(userId, sessionId, requestId);
    this.calls.set(k, c);
    this.onSize(this.calls.size);
    return () => {
      if (this.calls.get(k) === c) this.calls.delete(k);
      this.onSize(this.calls.size);
    };
  }

  cancel(userId: string, sessionId: string | null, requestId: string | number, reason: string): void {
    this.calls.get(this.key(userId, sessionId, requestId))?.abort(new CancelledError(reason));
  }

  get size(): number {
    return this.calls.size;
  }
}

class CancelledError extends Error {
  override readonly name = 'CancelledError';
}

export interface GatewayServerDeps {
  hub: McpHub;
  log: GatewayCallLog;
  inFlight: InFlightCalls;
  /** Each user's calls running, capped across replicas (AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER). */
  slots: CallSlots;
  /** A gateway call's limit when the server sets none (AIBRIDGE_MCP_GATEWAY_CALL_TIMEOUT_MS). */
  callTimeoutMs: number;
  now: () => number;
  /** The tool-call policy's answer for a call (docs/governance.md); undefined: no rule matched. */
  judge?: (principal: Principal, names: readonly string[], input: unknown) => ToolPolicyMark | undefined;
  /** Paces members' changes (docs/api.md#member-writes): an OAuth start a `connect` call makes is one. */
  writes?: Pick<MemberWrites, 'take'>;
}

/** Who is asking, through which client and session: one HTTP request's worth of context. */
export interface GatewayCaller {
  principal: Principal;
  client: string;
  sessionId: string | null;
  /** Aborts when the HTTP request carrying a call goes away. */
  gone: AbortSignal;
  /** The bridge's address as the user reaches it (AIBRIDGE_PUBLIC_URL, else the request's). */
  origin: string;
}
