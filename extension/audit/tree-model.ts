import { totalTokens } from '../../shared/usage';
import { formatAge, formatCost, formatCostExact, formatDuration, formatTokens } from '../format';
import {
  type GatewayCallItem,
  type InterceptionItem,
  NO_MODEL,
  type ToolCallItem,
} from '../model/bridge-model';

/** One row of the audit tree, as plain data; the TreeDataProvider turns it into a TreeItem. */
export interface TreeNode {
  /** Stable across refreshes, so VS Code keeps expansion and selection. */
  id: string;
  kind: 'interception' | 'toolCall' | 'gatewayCall';
  interceptionId: string;
  label: string;
  description: string;
  /** Markdown, with every name from the bridge escaped (`escapeMarkdown`); rendered untrusted, without HTML. */
  tooltip: string;
  /** A codicon id. */
  icon: string;
  children: TreeNode[];
}

export interface TreeOptions {
  /** Show only tool calls, as a flat list. */
  toolCallsOnly: boolean;
  now: number;
}

/** Longest model or tool name a row shows; clients choose these names, and a row must stay one glance. */
const MAX_NAME_ON_ROW = 32;
/** Tool names a row spells out before summing up the rest as `+N`. */
const TOOLS_ON_ROW = 2;
/** Longest name a tooltip shows: a 500 KB model name must not become a 500 KB hover. */
const MAX_NAME_IN_TOOLTIP = 200;

/** `s` cut to `max` characters, the cut marked with an ellipsis. */
export function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/**
 * Text shown literally in Markdown: every ASCII punctuation character backslash-escaped (CommonMark
 * renders `\x` as x), line breaks folded. Model, tool, server and client names are chosen by whoever
 * sends requests, so a name like `[x](command:aibridge.signOut)` must never become a link.
 */
export function escapeMarkdown(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/[!-/:-@[-`{-~]/g, '\\$&');
}

/** A name for a tooltip: cut short, then escaped. */
function md(s: string): string {
  return escapeMarkdown(clip(s, MAX_NAME_IN_TOOLTIP));
}

/** The row's summary of its tool calls: the first distinct names, then how many more, e.g. `read_file, Bash +2`. */
export function toolCallsSummary(calls: readonly ToolCallItem[]): string {
  const names = [...new Set(calls.map((c) => c.name))];
  const shown = names.slice(0, TOOLS_ON_ROW).map((n) => clip(n, MAX_NAME_ON_ROW));
  const more = names.length - shown.length;
  return more > 0 ? `${shown.join(', ')} +${more}` : shown.join(', ');
}

function interceptionLabel(item: InterceptionItem): string {
  const model = clip(item.model ?? NO_MODEL, MAX_NAME_ON_ROW * 2);
  return item.toolCalls.length > 0 ? `${model} · ${toolCallsSummary(item.toolCalls)}` : model;
}

function statusIcon(item: InterceptionItem): string {
  switch (item.status) {
    case 'running':
      return 'sync~spin';
    case 'ok':
      if (item.toolCalls.some((c) => c.policy?.action === 'deny')) return 'shield';
      if (item.cacheBreak) return 'warning';
      return item.toolCalls.length > 0 ? 'tools' : 'comment-discussion';
    case 'error':
      return 'error';
    case 'client_aborted':
      return 'circle-slash';
  }
}

export function toolCallDescription(c: ToolCallItem): string {
  const where = c.server ? `MCP ${c.server}` : 'client tool';
  const policy = c.policy
    ? `${c.policy.action === 'deny' ? 'BLOCKED' : 'FLAGGED'} (${c.policy.rule}) · `
    : '';
  return `${policy}${where} · ${c.injected ? 'injected' : 'not injected'} · ${c.inputPreview}`;
}

/**
 * Each tool call's row id. A call's id is the provider's, and it is not always unique: Gemini calls
 * recorded by earlier bridge versions are known by their name (two `read_file` calls in one answer
 * share it), and OpenAI-compatible servers have sent the same id twice. VS Code refuses a tree with two rows of one
 * id (the whole view fails), so a repeated id gets `#2`, `#3`… in the order the calls were made.
 */
function toolNodeIds(item: InterceptionItem): string[] {
  const seen = new Map<string, number>();
  return item.toolCalls.map((c) => {
    const n = (seen.get(c.id) ?? 0) + 1;
    seen.set(c.id, n);
    return `tool:${item.id}:${c.id}${n > 1 ? `#${n}` : ''}`;
  });
}

function toolNode(item: InterceptionItem, c: ToolCallItem, o: TreeOptions, id: string): TreeNode {
  const description = o.toolCallsOnly
    ? `${toolCallDescription(c)} · ${clip(item.model ?? NO_MODEL, MAX_NAME_ON_ROW * 2)} · ${formatAge(c.at, o.now)}`
    : toolCallDescription(c);
  return {
    id,
    kind: 'toolCall',
    interceptionId: item.id,
    label: clip(c.name, MAX_NAME_ON_ROW * 2),
    description,
    tooltip: [
      `**${md(c.name)}**`,
      '',
      `server: ${c.server !== null ? md(c.server) : '(none: a client tool)'}  `,
      `injected by the bridge: ${c.injected ? 'yes' : 'no'}  `,
      c.policy
        ? `policy: ${c.policy.action === 'deny' ? 'blocked' : 'flagged'} by rule ${md(c.policy.rule)}  `
        : '',
      `at: ${md(c.at)}`,
      '',
      '```json',
      c.inputPreview.replace(/```/g, '`\u200b``'),
      '```',
    ].join('\n'),
    icon: c.policy?.action === 'deny' ? 'shield' : c.policy ? 'eye' : c.injected ? 'plug' : 'tools',
    children: [],
  };
}

export function interceptionDescription(item: InterceptionItem, now: number): string {
  const parts = [clip(item.client, MAX_NAME_ON_ROW)];
  parts.push(`${formatTokens(totalTokens(item.usage))} tok`);
  if (item.status !== 'running') parts.push(formatCost(item.priceKnown ? item.costUsd : null));
  else parts.push('running');
  if (item.status === 'error' || item.status === 'client_aborted') parts.push(item.status.replace('_', ' '));
  if (item.cacheBreak) parts.push(`cache break: ${item.cacheBreak.cause.replace('_', ' ')}`);
  if (item.startedAt) parts.push(formatAge(item.startedAt, now));
  return parts.join(' · ');
}

/** A call an agent made through the MCP gateway: a row of its own, next to the model requests in time. */
function gatewayNode(c: GatewayCallItem, o: TreeOptions): TreeNode {
  const outcome = c.outcome === 'ok' ? '' : ` · ${c.outcome.replace(/_/g, ' ')}`;
  return {
    id: `gw:${c.id}`,
    kind: 'gatewayCall',
    interceptionId: '',
    label: clip(c.name, MAX_NAME_ON_ROW * 2),
    description: `MCP gateway · ${clip(c.client, MAX_NAME_ON_ROW)}${outcome} · ${formatDuration(c.durationMs)} · ${formatAge(c.at, o.now)}`,
    tooltip: [
      `**${md(c.name)}** through the bridge's MCP gateway`,
      '',
      `server: ${md(c.server)}  `,
      `client: ${md(c.client)}  `,
      `session: ${c.sessionId !== null ? md(c.sessionId) : '(none)'}  `,
      `outcome: ${md(String(c.outcome))}, ${formatDuration(c.durationMs)}  `,
      `at: ${md(c.at)}`,
      '',
      '```json',
      c.inputPreview.replace(/```/g, '`\u200b``'),
      '```',
    ].join('\n'),
    icon: c.outcome === 'denied' ? 'shield' : c.outcome === 'ok' ? 'plug' : 'warning',
    children: [],
  };
}

/** Newest first, by each row's time. */
function byTimeDesc<T extends { at: string }>(rows: T[]): T[] {
  return rows.sort((a, b) => b.at.localeCompare(a.at));
}

/**
 * The tree's rows for the model's interceptions and the gateway's tool calls, newest first: a
 * gateway call sits between the model requests of its time.
 */
export function buildTree(
  items: readonly InterceptionItem[],
  o: TreeOptions,
  gatewayCalls: readonly GatewayCallItem[] = [],
): TreeNode[] {
  if (o.toolCallsOnly) {
    const rows = [
      ...items.flatMap((item) => {
        const ids = toolNodeIds(item);
        return item.toolCalls.map((c, i) => ({ at: c.at, node: () => toolNode(item, c, o, ids[i]!) }));
      }),
      ...gatewayCalls.map((c) => ({ at: c.at, node: () => gatewayNode(c, o) })),
    ];
    return byTimeDesc(rows).map((r) => r.node());
  }
  const rows = [
    ...items.map((item) => ({ at: item.startedAt, node: () => interceptionNode(item, o) })),
    ...gatewayCalls.map((c) => ({ at: c.at, node: () => gatewayNode(c, o) })),
  ];
  return byTimeDesc(rows).map((r) => r.node());
}

function interceptionNode(item: InterceptionItem, o: TreeOptions): TreeNode {
  const ids = toolNodeIds(item);
  return {
    id: `int:${item.id}`,
    kind: 'interception',
    interceptionId: item.id,
    label: interceptionLabel(item),
    description: interceptionDescription(item, o.now),
    tooltip: [
      `**${md(item.model ?? NO_MODEL)}** via ${md(item.provider)} · ${md(item.client)}`,
      '',
      `status: ${md(String(item.status))}  `,
      `started: ${item.startedAt ? md(item.startedAt) : '?'}  `,
      item.durationMs !== null ? `duration: ${formatDuration(item.durationMs)}  ` : '',
      `tokens: input ${Number(item.usage.input)}, output ${Number(item.usage.output)}, cache read ${Number(item.usage.cacheRead)}, cache write ${Number(item.usage.cacheWrite)}  `,
      `cost: ${item.status === 'running' ? '(running)' : formatCostExact(item.priceKnown ? item.costUsd : null)}  `,
      `tool calls: ${item.toolCalls.length}${item.toolCalls.length > 0 ? ` (${md(toolCallsSummary(item.toolCalls))})` : ''}`,
      item.cacheBreak
        ? `  \nprompt cache broke: ${md(String(item.cacheBreak.cause))}, ${Number(item.cacheBreak.tokens)} tokens rewritten${item.cacheBreak.excessUsd !== null ? `, ${formatCostExact(item.cacheBreak.excessUsd)} extra` : ''}`
        : '',
    ]
      .filter((l) => l !== '')
      .join('\n'),
    icon: statusIcon(item),
    children: item.toolCalls.map((c, i) => toolNode(item, c, o, ids[i]!)),
  };
}
