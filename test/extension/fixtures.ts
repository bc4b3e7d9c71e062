import type { UsageMe } from '../../extension/api/bridge-client';
import type { Interception } from '../../shared/interception';
import type { BridgeEvent, InterceptionRef } from '../../shared/protocol';
import type { Usage } from '../../shared/usage';

export const ALICE = { id: 'u_alice', email: 'alice@example.com', role: 'member', team: 'core' };
export const KEY = `aib_${'A'.repeat(43)}`;
export const URL = 'https://bridge.example.com';

export function usage(input: number, output: number, cacheRead = 0, cacheWrite = 0): Usage {
  return { input, output, cacheRead, cacheWrite, reasoning: 0 };
}

export function ref(id: string, over: Partial<InterceptionRef> = {}): InterceptionRef {
  return {
    interceptionId: id,
    userId: ALICE.id,
    userEmail: ALICE.email,
    team: ALICE.team,
    provider: 'anthropic',
    api: 'messages',
    model: 'claude-sonnet-4-6',
    client: 'claude-code',
    sessionId: null,
    ...over,
  };
}

export function ended(
  id: string,
  at: string,
  u: Usage,
  costUsd: number | null,
  over: Partial<InterceptionRef> = {},
): Extract<BridgeEvent, { type: 'interception.ended' }> {
  return {
    type: 'interception.ended',
    ...ref(id, over),
    at,
    usage: u,
    costUsd,
    priceKnown: costUsd !== null,
    status: 'ok',
    durationMs: 1200,
  };
}

/** `usage/me` for today (2026-03-10) with one model and an optional budget. */
export function usageMe(over: Partial<UsageMe> = {}): UsageMe {
  return {
    period: 'day',
    since: '2026-03-10T00:00:00.000Z',
    until: '2026-03-11T00:00:00.000Z',
    requests: 2,
    usage: usage(1000, 200),
    costUsd: 0.5,
    unpricedRequests: 0,
    byModel: [
      {
        key: 'claude-sonnet-4-6',
        requests: 2,
        usage: usage(1000, 200),
        costUsd: 0.5,
        unpricedRequests: 0,
        userBilledCostUsd: 0,
        userBilledRequests: 0,
      },
    ],
    budgets: [],
    ...over,
  };
}

export function budget(limitUsd: number, spentUsd: number): UsageMe['budgets'][number] {
  return {
    id: 'b1',
    scope: 'user',
    subject: ALICE.id,
    period: 'day',
    limitUsd,
    action: 'block',
    thresholds: [0.8],
    createdAt: '2026-03-01T00:00:00.000Z',
    updatedAt: '2026-03-01T00:00:00.000Z',
    periodStart: '2026-03-10T00:00:00.000Z',
    resetsAt: '2026-03-11T00:00:00.000Z',
    spentUsd,
    reservedUsd: 0,
  };
}

export function record(id: string, over: Partial<Interception> = {}): Interception {
  return {
    id,
    seq: 1,
    userId: ALICE.id,
    userEmail: ALICE.email,
    team: ALICE.team,
    keyId: 'k1',
    provider: 'anthropic',
    api: 'messages',
    model: 'claude-sonnet-4-6',
    client: 'claude-code',
    sessionId: 's1',
    startedAt: '2026-03-10T09:00:00.000Z',
    endedAt: '2026-03-10T09:00:02.000Z',
    durationMs: 2000,
    status: 'ok',
    httpStatus: 200,
    streamed: true,
    usage: usage(100, 20),
    costUsd: 0.01,
    priceKnown: true,
    prompt: 'hello',
    toolCalls: [],
    error: null,
    upstreamRequestId: null,
    redactions: [],
    ...over,
  };
}
