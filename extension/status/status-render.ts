import type { CacheBreakCause } from '../../shared/interception';
import { totalTokens } from '../../shared/usage';
import { formatCost, formatCostExact, formatSpend, formatTokens, periodLabel } from '../format';
import { COMMANDS } from '../ids';
import { type BridgeModel, budgetFraction, WARN_FRACTION } from '../model/bridge-model';

export interface StatusView {
  /** With codicons (`$(pulse)`). */
  text: string;
  /** Markdown. */
  tooltip: string;
  severity: 'normal' | 'warning' | 'error';
  command: string;
  /** For screen readers. */
  accessibilityLabel: string;
}

/** Why a session's prompt cache was rewritten, in words (docs/governance.md#prompt-cache-breaks). */
export const CACHE_BREAK_WORDS: Record<CacheBreakCause, string> = {
  tools_changed: 'the tool list changed',
  system_changed: 'the system prompt changed',
  model_changed: 'the model changed',
  ttl_expired: 'a pause longer than the cache lifetime',
  context_edited: 'earlier context was edited',
  unknown: 'cause unknown',
};

/**
 * A cause in words. A newer bridge may send a cause this version does not know: it is shown as its
 * name in plain words, rather than as "undefined" (or a render that throws and freezes the bar).
 */
export function cacheBreakWords(cause: string): string {
  if (Object.hasOwn(CACHE_BREAK_WORDS, cause)) return CACHE_BREAK_WORDS[cause as CacheBreakCause];
  return cause.replace(/[^A-Za-z0-9]+/g, ' ').trim() || CACHE_BREAK_WORDS.unknown;
}

/** Markdown that shows `s` literally. */
export function mdEscape(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}

function connectionWords(m: BridgeModel): string {
  const c = m.connection;
  switch (c.status) {
    case 'signedOut':
      return 'signed out';
    case 'connecting':
      return 'connecting';
    case 'live':
      return 'live';
    case 'reconnecting':
      return `reconnecting (${c.lastError})`;
    case 'error':
      return `error: ${c.message}`;
  }
}

/** The status bar item for the model's state: a pure function, so every state is unit-tested. */
export function renderStatus(m: BridgeModel, bridgeUrl: string | null): StatusView {
  const c = m.connection;
  if (c.status === 'signedOut') {
    return {
      text: '$(account) AI Bridge: Sign In',
      tooltip: 'AI Bridge: signed out. Click to sign in.',
      severity: 'normal',
      command: COMMANDS.signIn,
      accessibilityLabel: 'AI Bridge, signed out. Sign in.',
    };
  }
  if (c.status === 'error' && c.needsSignIn) {
    return {
      text: '$(error) AI Bridge: Sign In Again',
      tooltip: `AI Bridge: the bridge refused the key (${mdEscape(c.message)}). Click to sign in again.`,
      severity: 'error',
      command: COMMANDS.signIn,
      accessibilityLabel: 'AI Bridge, key refused. Sign in again.',
    };
  }

  const s = m.spend;
  // A request at an unknown price is not free: the total says so rather than showing $0.
  const cost = s ? formatSpend(s.costUsd, s.unpricedRequests) : '';
  const amount = s ? `${formatTokens(totalTokens(s.usage))} tok · ${cost}` : '…';
  const icon =
    c.status === 'live'
      ? '$(pulse)'
      : c.status === 'error'
        ? '$(error)'
        : c.status === 'reconnecting'
          ? '$(debug-disconnect)'
          : '$(sync~spin)';
  const suffix = c.status === 'reconnecting' ? ' (reconnecting)' : c.status === 'error' ? ' (error)' : '';
  const near = m.nearestBudget();
  let severity: StatusView['severity'] = c.status === 'error' ? 'error' : 'normal';
  if (near && near.fraction >= 1) severity = 'error';
  else if (near && near.fraction >= WARN_FRACTION && severity === 'normal') severity = 'warning';

  const lines: string[] = [];
  const who = m.user ? ` · ${mdEscape(m.user.email)}` : '';
  lines.push(`**AI Bridge** — ${mdEscape(connectionWords(m))}${who}`);
  const cw = m.cacheWarning;
  if (cw) {
    if (severity === 'normal') severity = 'warning';
    const extra =
      cw.excessUsd !== null ? `, about ${formatCostExact(cw.excessUsd)} more than a cached turn` : '';
    lines.push(
      '',
      `$(warning) **Prompt cache broke**: ${mdEscape(cacheBreakWords(cw.cause))}; ${Number(cw.tokens)} tokens written again${mdEscape(extra)}.`,
    );
  }
  if (bridgeUrl) lines.push('', mdEscape(bridgeUrl));
  if (s) {
    const unpriced = s.unpricedRequests > 0 ? ` (${s.unpricedRequests} at an unknown price)` : '';
    lines.push(
      '',
      `**${periodLabel(s.period)}**: ${Number(s.requests)} requests · ${formatTokens(totalTokens(s.usage))} tokens · ${mdEscape(s.unpricedRequests > 0 && s.costUsd === 0 ? '$?' : formatCostExact(s.costUsd))}${mdEscape(unpriced)}`,
      '',
      `input ${formatTokens(s.usage.input)} · output ${formatTokens(s.usage.output)} · cache read ${formatTokens(s.usage.cacheRead)} · cache write ${formatTokens(s.usage.cacheWrite)}`,
    );
    const rows = [...s.byModel.values()].sort((a, b) => b.costUsd - a.costUsd || b.tokens - a.tokens);
    if (rows.length > 0) {
      lines.push('', '| model | requests | tokens | cost |', '|---|---:|---:|---:|');
      for (const r of rows) {
        lines.push(
          `| ${mdEscape(r.model)} | ${Number(r.requests)} | ${formatTokens(r.tokens)} | ${mdEscape(formatSpend(r.costUsd, r.unpricedRequests))} |`,
        );
      }
    }
    if (s.budgets.length > 0) {
      lines.push('');
      for (const b of s.budgets) {
        const pct = Math.round(budgetFraction(b) * 100);
        const warn = pct >= 100 ? ' $(error)' : pct >= WARN_FRACTION * 100 ? ' $(warning)' : '';
        lines.push(
          `Budget ${mdEscape(b.label)}: ${mdEscape(formatCost(b.spentUsd))} of ${mdEscape(formatCost(b.limitUsd))} (${pct}%)${warn}  `,
        );
      }
    }
  }
  lines.push('', 'Click to open the audit view.');
  const spoken = s
    ? `${formatTokens(totalTokens(s.usage))} tokens, ${cost}${s.unpricedRequests > 0 ? ' (some at an unknown price)' : ''} ${periodLabel(s.period)}`
    : '';
  const cacheNote = cw ? ` · $(warning) cache: ${cacheBreakWords(cw.cause)}` : '';
  return {
    text: `${icon} ${amount}${suffix}${cacheNote}`,
    tooltip: lines.join('\n'),
    severity,
    command: COMMANDS.showAudit,
    accessibilityLabel: `AI Bridge, ${connectionWords(m)}. ${spoken}${cw ? `. Prompt cache broke: ${cacheBreakWords(cw.cause)}` : ''}`,
  };
}
