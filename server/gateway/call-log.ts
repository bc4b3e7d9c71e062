import type { FastifyBaseLogger } from 'fastify';
import type { CaptureLevel, GatewayToolCall } from '../../shared/interception';
import { toolInputPreview } from '../../shared/protocol';
import { capJson } from '../audit/cap-json';
import type { Redaction, Redactor } from '../audit/redact';
import type { EventBus } from '../events/bus';
import type { Metrics } from '../metrics';
import type { Store } from '../store/types';

/**
 * Where each MCP gateway call (a tool call, or a resource or prompt read) goes when it ends: the store (listed by `GET /api/v1/tool-calls`
 * with `via: "gateway"`), the metrics, and a live `tool.call` event to the user, their team's
 * admins and admins. The arguments are redacted before any of them sees them.
 */
export class GatewayCallLog {
  constructor(
    private readonly d: {
      store: Store;
      metrics: Metrics;
      bus: EventBus;
      log: FastifyBaseLogger;
      redactor: Redactor;
      /** The caller's team's capture level: at `none`, no arguments are kept (docs/audit.md). */
      captureFor?: (team: string | null) => CaptureLevel;
    },
  ) {}

  /**
   * A call's arguments as kept: nothing at capture `none`, else redacted and bounded (a member
   * choosing megabytes of arguments, for a tool that need not even exist, must not make them the
   * audit's, and the embedded store keeps recent calls in memory).
   */
  keptInput(input: unknown, team: string | null): unknown {
    if (this.d.captureFor?.(team) === 'none') return null;
    // Redacted before the cap: the cap keeps the start of the JSON text, in which a line's start
    // is an escaped `\n` and `.env` assignments would no longer be found.
    return capJson(this.redact(input), INPUT_LIMIT);
  }

  /** A value redacted as prompts are (a resource URI, a name the client chose). */
  redact(input: unknown): unknown {
    const found: Redaction[] = [];
    return this.d.redactor.value(input, 'input', found);
  }

  private redactText(s: string): string {
    return this.d.redactor.text(s, 'input', []);
  }

  /** Records a finished call; the store write runs beside the response, a failure is logged. */
  record(given: GatewayToolCall): Promise<void> {
    // The error is what a server (or its transport) said: it may hold a connection string or echo
    // the arguments, which are redacted; the name is the client's string when no such tool exists
    // (a per-user server not yet connected, a prompt), so it is cut as the arguments are.
    const call: GatewayToolCall = {
      ...given,
      name: recordedName(this.redactText(given.name)),
      tool: recordedName(this.redactText(given.tool)),
      error: given.error === null ? null : this.redactText(given.error),
    };
    // The metric counts tool calls, as its name says; reads are in the store and on the live feed.
    if (call.kind === undefined)
      this.d.metrics.gatewayCalls.inc({ server: call.server, outcome: call.outcome });
    this.d.bus.publish(
      {
        type: 'tool.call',
        via: 'gateway',
        at: call.at,
        callId: call.id,
        ...(call.kind ? { kind: call.kind } : {}),
        name: call.name,
        server: call.server,
        injected: false,
        inputPreview: toolInputPreview(call.input),
        userId: call.userId,
        userEmail: call.userEmail,
        team: call.team,
        client: call.client,
        sessionId: call.sessionId,
        outcome: call.outcome,
        durationMs: call.durationMs,
      },
      { userId: call.userId, team: call.team },
    );
    return this.d.store.appendGatewayCall(call).catch((err: unknown) => {
      this.d.log.error({ err, callId: call.id }, 'mcp gateway: the call record was not stored');
    });
  }
}

/** The most of a call's arguments a record keeps, as JSON: the embedded store keeps the newest 50,000 calls in memory. */
const INPUT_LIMIT = 8 * 1024;

/** The longest name (and tool) a record keeps, in characters; a longer one is cut, marked with `…`. */
const NAME_LIMIT = 1024;

function recordedName(s: string): string {
  return s.length > NAME_LIMIT ? `${s.slice(0, NAME_LIMIT)}…` : s;
}
