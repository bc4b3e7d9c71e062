import type { BridgeEvent } from '../shared/protocol';
import { totalTokens } from '../shared/usage';

/** One line of the live feed: a request that ended, a tool call a model made, or an alert. */
export interface FeedRow {
  id: string;
  at: string;
  kind: 'request' | 'tool' | 'alert';
  user: string;
  model: string | null;
  client: string;
  /** Request: tokens and cost; tool: the tool's name and an argument preview. */
  detail: string;
  costUsd: number | null;
  status: string;
}

export function feedRowOf(e: BridgeEvent): FeedRow | undefined {
  switch (e.type) {
    case 'interception.ended':
      return {
        id: `${e.interceptionId}:end`,
        at: e.at,
        kind: 'request',
        user: e.userEmail,
        model: e.model,
        client: e.client,
        detail: `${totalTokens(e.usage)} tokens, ${e.durationMs} ms`,
        costUsd: e.costUsd,
        status: e.status,
      };
    case 'tool.call':
      if (e.via === 'gateway')
        return {
          id: `gateway:${e.callId}`,
          at: e.at,
          kind: 'tool',
          user: e.userEmail,
          model: null,
          client: e.client,
          detail: `${e.server}/${e.name} ${e.inputPreview}`,
          costUsd: null,
          status: `gateway ${e.outcome}`,
        };
      return {
        id: `${e.interceptionId}:${e.callId}`,
        at: e.at,
        kind: 'tool',
        user: e.userEmail,
        model: e.model,
        client: e.client,
        detail: `${e.server ? `${e.server}/` : ''}${e.name} ${e.inputPreview}`,
        costUsd: null,
        status: e.injected ? 'injected' : 'client',
      };
    case 'budget.alert':
    case 'alert':
      return {
        id: e.alert.id,
        at: e.alert.at,
        kind: 'alert',
        user: e.alert.userEmail ?? e.alert.team ?? 'org',
        model: null,
        client: '',
        detail: e.alert.message,
        costUsd: null,
        status: e.alert.rule,
      };
    default:
      return undefined;
  }
}
