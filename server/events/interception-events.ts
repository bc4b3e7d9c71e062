import type { CacheBreak } from '../../shared/interception';
import { type InterceptionRef, PROGRESS_PER_SECOND, toolInputPreview } from '../../shared/protocol';
import { toolCallSummary } from '../../shared/tool-policy';
import { totalTokens, type Usage } from '../../shared/usage';
import type { InterceptionStart } from '../core/facts';
import type { NewInterception } from '../store/types';
import type { EventBus } from './bus';

const PROGRESS_GAP_MS = 1000 / PROGRESS_PER_SECOND;

/** Something that can say how much a stream has used so far (a stream meter). */
export interface UsageSoFar {
  result(): { usage: Usage };
}

function refFromStart(start: InterceptionStart): InterceptionRef {
  const { user } = start.principal;
  return {
    interceptionId: start.id,
    userId: user.id,
    userEmail: user.email,
    team: user.team,
    provider: start.provider,
    api: start.api,
    model: start.request.model,
    client: start.client,
    sessionId: start.request.sessionId,
  };
}

function refFromRecord(rec: NewInterception): InterceptionRef {
  return {
    interceptionId: rec.id,
    userId: rec.userId,
    userEmail: rec.userEmail,
    team: rec.team,
    provider: rec.provider,
    api: rec.api,
    model: rec.model,
    client: rec.client,
    sessionId: rec.sessionId,
  };
}

/**
 * Turns what the proxy and the recorder see into `interception.*` and `tool.call` events on the bus.
 * The proxy calls it without knowing the protocol; nothing here is built when nobody listens.
 */
export class InterceptionEvents {
  constructor(
    private readonly bus: EventBus,
    private readonly now: () => number = Date.now,
  ) {}

  /** A metered request was admitted and is about to go upstream. */
  started(start: InterceptionStart): void {
    if (this.bus.size === 0) return;
    const ref = refFromStart(start);
    this.bus.publish(
      { type: 'interception.started', ...ref, at: start.startedAt.toISOString() },
      { userId: ref.userId, team: ref.team },
    );
  }

  /**
   * A function for one stream, to call as each SSE event passes: at most PROGRESS_PER_SECOND times a
   * second, and only when the usage changed, it publishes the usage so far. Between publishes it costs
   * one clock read and a comparison.
   */
  progress(start: InterceptionStart): (meter: UsageSoFar) => void {
    let last = Number.NEGATIVE_INFINITY;
    let lastTokens = -1;
    // Built on the first publish (nobody may be listening), then reused for the stream's life.
    let ref: ReturnType<typeof refFromStart> | undefined;
    return (meter) => {
      const t = this.now();
      if (t - last < PROGRESS_GAP_MS || this.bus.size === 0) return;
      last = t;
      const usage = meter.result().usage;
      const tokens = totalTokens(usage);
      if (tokens === lastTokens) return;
      lastTokens = tokens;
      ref ??= refFromStart(start);
      this.bus.publish(
        { type: 'interception.progress', ...ref, at: new Date(t).toISOString(), usage },
        { userId: ref.userId, team: ref.team },
      );
    };
  }

  /** The interception's turn broke its session's prompt cache. */
  cacheBreak(rec: NewInterception, brk: CacheBreak): void {
    if (this.bus.size === 0) return;
    this.bus.publish(
      {
        type: 'cache.break',
        ...refFromRecord(rec),
        at: rec.endedAt,
        cause: brk.cause,
        excessUsd: brk.excessUsd,
        tokens: brk.tokens,
        previousInterceptionId: brk.previousInterceptionId,
      },
      { userId: rec.userId, team: rec.team },
    );
  }

  /** The interception ended: each tool call it made (inputs already redacted) with what a tool policy said of it, then the end itself. */
  ended(rec: NewInterception): void {
    if (this.bus.size === 0) return;
    const ref = refFromRecord(rec);
    const audience = { userId: rec.userId, team: rec.team };
    for (const call of rec.toolCalls) {
      this.bus.publish(
        {
          type: 'tool.call',
          ...ref,
          at: call.at,
          callId: call.id,
          name: call.name,
          server: call.server,
          injected: call.injected,
          inputPreview: toolInputPreview(call.input),
          via: call.injected ? 'injected' : 'client',
        },
        audience,
      );
      if (call.policy)
        this.bus.publish(
          {
            type: 'tool.policy',
            ...ref,
            at: call.at,
            callId: call.id,
            tool: call.name,
            rule: call.policy.rule,
            action: call.policy.action,
            summary: call.input === null ? '' : toolCallSummary(call.input),
          },
          audience,
        );
    }
    this.bus.publish(
      {
        type: 'interception.ended',
        ...ref,
        at: rec.endedAt,
        usage: rec.usage,
        costUsd: rec.costUsd,
        priceKnown: rec.priceKnown,
        status: rec.status,
        durationMs: rec.durationMs,
        ...(rec.billedTo ? { billedTo: rec.billedTo } : {}),
      },
      audience,
    );
  }
}
