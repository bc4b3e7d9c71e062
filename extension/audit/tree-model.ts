import { totalTokens } from '../../shared/usage';
import { formatAge, formatCost, formatCostExact, formatDuration, formatTokens } from '../format';
import { type InterceptionItem, NO_MODEL, type ToolCallItem } from '../model/bridge-model';

/** One row of the audit tree, as plain data; the TreeDataProvider turns it into a TreeItem. */
export interface TreeNode {
  /** Stable across refreshes, so VS Code keeps expansion and selection. */
  id: string;
  kind: 'interception' | 'toolCall';
  interceptionId: string;
  label: string;
  description: string;
  /** Markdown. */
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

function statusIcon(item: InterceptionItem): string {
  switch (item.status) {
    case 'running':
      return 'sync~spin';
    case 'ok':
      return item.toolCalls.length > 0 ? 'tools' : 'comment-discussion';
    case 'error':
      return 'error';
    case 'client_aborted':
      return 'circle-slash';
  }
}

export function toolCallDescription(c: ToolCallItem): string {
  const where = c.server ? `MCP ${c.server}` : 'client tool';
  return `${where} · ${c.injected ? 'injected' : 'not injected'} · ${c.inputPreview}`;
}

function toolNode(item: InterceptionItem, c: ToolCallItem, o: TreeOptions): TreeNode {
  const description = o.toolCallsOnly
    ? `${toolCallDescription(c)} · ${item.model ?? NO_MODEL} · ${formatAge(c.at, o.now)}`
    : toolCallDescription(c);
  return {
    id: `tool:${item.id}:${c.id}`,
    kind: 'toolCall',
    interceptionId: item.id,
    label: c.name,
    description,
    tooltip: [
      `**${c.name}**`,
      '',
      `server: ${c.server ?? '(none: a client tool)'}  `,
      `injected by the bridge: ${c.injected ? 'yes' : 'no'}  `,
      `at: ${c.at}`,
      '',
      '```json',
      c.inputPreview.replace(/```/g, '`\u200b``'),
      '```',
    ].join('\n'),
    icon: c.injected ? 'plug' : 'tools',
    children: [],
  };
}

export function interceptionDescription(item: InterceptionItem, now: number): string {
  const parts = [item.client];
  parts.push(`${formatTokens(totalTokens(item.usage))} tok`);
  if (item.status !== 'running') parts.push(formatCost(item.priceKnown ? item.costUsd : null));
  else parts.push('running');
  if (item.status === 'error' || item.status === 'client_aborted') parts.push(item.status.replace('_', ' '));
  if (item.startedAt) parts.push(formatAge(item.startedAt, now));
  return parts.join(' · ');
}

/** The tree's rows for the model's interceptions (newest first). */
export function buildTree(items: readonly InterceptionItem[], o: TreeOptions): TreeNode[] {
  if (o.toolCallsOnly) {
    const calls = items.flatMap((item) => item.toolCalls.map((c) => ({ item, c })));
    calls.sort((a, b) => b.c.at.localeCompare(a.c.at));
    return calls.map(({ item, c }) => toolNode(item, c, o));
  }
  return items.map((item) => ({
    id: `int:${item.id}`,
    kind: 'interception',
    interceptionId: item.id,
    label: item.model ?? NO_MODEL,
    description: interceptionDescription(item, o.now),
    tooltip: [
      `**${item.model ?? NO_MODEL}** via ${item.provider} · ${item.client}`,
      '',
      `status: ${item.status}  `,
      `started: ${item.startedAt || '?'}  `,
      item.durationMs !== null ? `duration: ${formatDuration(item.durationMs)}  ` : '',
      `tokens: input ${item.usage.input}, output ${item.usage.output}, cache read ${item.usage.cacheRead}, cache write ${item.usage.cacheWrite}  `,
      `cost: ${item.status === 'running' ? '(running)' : formatCostExact(item.priceKnown ? item.costUsd : null)}  `,
      `tool calls: ${item.toolCalls.length}`,
    ]
      .filter((l) => l !== '')
      .join('\n'),
    icon: statusIcon(item),
    children: item.toolCalls.map((c) => toolNode(item, c, o)),
  }));
}
