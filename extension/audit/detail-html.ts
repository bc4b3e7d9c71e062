import type { Interception } from '../../shared/interception';
import { totalTokens } from '../../shared/usage';
import { formatCostExact, formatDuration, formatTokens } from '../format';
import { type InterceptionItem, NO_MODEL } from '../model/bridge-model';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function pretty(input: unknown): string {
  if (typeof input === 'string') return input;
  try {
    return JSON.stringify(input, null, 2) ?? '';
  } catch {
    return String(input);
  }
}

/** What the detail view shows: the full record when the bridge has it, else what live events said. */
export type DetailSource =
  | { kind: 'record'; record: Interception }
  | { kind: 'live'; item: InterceptionItem; note: string };

const STYLE = `
  body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 16px 16px; }
  h1 { font-size: 1.3em; margin-bottom: 0.2em; }
  .sub { color: var(--vscode-descriptionForeground); margin-top: 0; }
  table { border-collapse: collapse; margin: 8px 0; }
  th, td { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
  th { color: var(--vscode-descriptionForeground); font-weight: normal; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  pre { background: var(--vscode-textCodeBlock-background); padding: 8px; white-space: pre-wrap; word-break: break-word; max-height: 40em; overflow: auto; }
  .note { color: var(--vscode-descriptionForeground); font-style: italic; }
  .error { color: var(--vscode-errorForeground); }
  .tag { border: 1px solid var(--vscode-contrastBorder, var(--vscode-descriptionForeground)); border-radius: 3px; padding: 0 4px; font-size: 0.9em; }
`;

/**
 * The detail webview's page: prompt, usage, cost and tool inputs, every value escaped. It has no
 * scripts at all (the CSP forbids them), so there is nothing to wait for or message.
 */
export function renderDetail(src: DetailSource, cspSource: string): string {
  const r = src.kind === 'record' ? src.record : undefined;
  const item = src.kind === 'live' ? src.item : undefined;
  const base = (r ?? item)!;
  const usage = base.usage;
  const cost =
    base.status === 'running' ? '(running)' : formatCostExact(base.priceKnown ? base.costUsd : null);
  const rows: [string, string][] = [
    ['status', base.status + (r?.httpStatus ? ` (HTTP ${r.httpStatus})` : '')],
    ['provider', `${base.provider}${r ? ` · ${r.api}` : ''}`],
    ['client', base.client],
    ['user', base.userEmail],
    ['session', base.sessionId ?? '—'],
    ['started', base.startedAt || '—'],
    ['duration', base.durationMs !== null ? formatDuration(base.durationMs) : '—'],
    ['cost', cost],
    ['interception', base.id],
  ];
  if (r?.upstreamRequestId) rows.push(['provider request id', r.upstreamRequestId]);
  const usageRows: [string, number][] = [
    ['input', usage.input],
    ['output', usage.output],
    ['cache read', usage.cacheRead],
    ['cache write', usage.cacheWrite],
    ['reasoning (part of output)', usage.reasoning],
    ['total', totalTokens(usage)],
  ];
  const calls = r
    ? r.toolCalls.map((c) => ({ ...c, text: pretty(c.input) }))
    : (item?.toolCalls ?? []).map((c) => ({ ...c, text: c.inputPreview }));
  const output = (r as { output?: { text?: string } } | undefined)?.output?.text;

  const parts: string[] = [];
  parts.push(`<h1>${escapeHtml(base.model ?? NO_MODEL)}</h1>`);
  parts.push(
    `<p class="sub">${escapeHtml(`${base.client} · ${formatTokens(totalTokens(usage))} tokens · ${cost}`)}</p>`,
  );
  if (src.kind === 'live') parts.push(`<p class="note">${escapeHtml(src.note)}</p>`);
  if (r?.error) parts.push(`<p class="error">${escapeHtml(`${r.error.type}: ${r.error.message}`)}</p>`);
  parts.push(
    `<table>${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`,
  );
  parts.push('<h2>Prompt</h2>');
  if (r)
    parts.push(r.prompt ? `<pre>${escapeHtml(r.prompt)}</pre>` : '<p class="note">No prompt recorded.</p>');
  else parts.push('<p class="note">The prompt is shown once the record is stored.</p>');
  if (output) parts.push(`<h2>Response</h2><pre>${escapeHtml(output)}</pre>`);
  parts.push('<h2>Usage</h2>');
  parts.push(
    `<table>${usageRows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td class="num">${escapeHtml(Number(v).toLocaleString('en-US'))}</td></tr>`).join('')}</table>`,
  );
  parts.push(`<h2>Tool calls (${calls.length})</h2>`);
  if (calls.length === 0) parts.push('<p class="note">No tool calls.</p>');
  for (const c of calls) {
    const tags = [c.server ? `MCP ${c.server}` : 'client tool', c.injected ? 'injected' : 'not injected'];
    parts.push(
      `<h3>${escapeHtml(c.name)} ${tags.map((t) => `<span class="tag">${escapeHtml(t)}</span>`).join(' ')}</h3>`,
      `<p class="sub">${escapeHtml(`${c.id} · ${c.at}`)}</p>`,
      `<pre>${escapeHtml(c.text)}</pre>`,
    );
  }
  if (r && r.redactions.length > 0) {
    parts.push(
      `<p class="note">${escapeHtml(`Secrets blanked before storage: ${r.redactions.map((x) => `${x.count} ${x.kind} in ${x.field}`).join(', ')}.`)}</p>`,
    );
  }
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${cspSource} 'unsafe-inline'; img-src ${cspSource};">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(base.model ?? 'Interception')}</title>
<style>${STYLE}</style>
</head>
<body>
${parts.join('\n')}
</body>
</html>`;
}
