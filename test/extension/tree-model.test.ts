import assert from 'node:assert/strict';
import { escapeHtml, renderDetail } from '../../extension/audit/detail-html';
import { buildTree } from '../../extension/audit/tree-model';
import { BridgeModel } from '../../extension/model/bridge-model';
import { record, usage } from './fixtures';

const NOW = Date.parse('2026-03-10T09:05:00.000Z');

function items() {
  const m = new BridgeModel();
  m.seedHistory([
    record('r2', {
      startedAt: '2026-03-10T09:04:00.000Z',
      usage: usage(1000, 500),
      costUsd: 0.02,
      toolCalls: [
        {
          id: 'c1',
          name: 'read_file',
          server: 'files',
          input: { path: '/a' },
          injected: true,
          at: '2026-03-10T09:04:01.000Z',
        },
        {
          id: 'c2',
          name: 'Bash',
          server: null,
          input: { cmd: 'ls' },
          injected: false,
          at: '2026-03-10T09:04:02.000Z',
        },
      ],
    }),
    record('r1', { model: null, client: 'codex', status: 'error', costUsd: null, priceKnown: false }),
  ]);
  return m.items;
}

describe('extension: audit tree model and detail page', () => {
  it('one row per interception (model, client, tokens, cost, age) with its tool calls as children', () => {
    const tree = buildTree(items(), { toolCallsOnly: false, now: NOW });
    assert.deepEqual(
      tree.map((n) => [n.id, n.label, n.description]),
      [
        ['int:r2', 'claude-sonnet-4-6', 'claude-code · 1.5k tok · $0.02 · 1m ago'],
        ['int:r1', '(no model)', 'codex · 120 tok · $? · error · 5m ago'],
      ],
    );
    const calls = tree[0]!.children;
    assert.deepEqual(
      calls.map((c) => [c.id, c.label, c.description, c.icon]),
      [
        ['tool:r2:c1', 'read_file', 'MCP files · injected · {"path":"/a"}', 'plug'],
        ['tool:r2:c2', 'Bash', 'client tool · not injected · {"cmd":"ls"}', 'tools'],
      ],
    );
    assert.equal(calls[0]!.interceptionId, 'r2');
    assert.deepEqual(tree[1]!.children, []);
  });

  it('the tool-calls filter lists only tool calls, newest first, each naming its model', () => {
    const tree = buildTree(items(), { toolCallsOnly: true, now: NOW });
    assert.deepEqual(
      tree.map((n) => [n.kind, n.label]),
      [
        ['toolCall', 'Bash'],
        ['toolCall', 'read_file'],
      ],
    );
    assert.match(tree[0]!.description, /claude-sonnet-4-6 · 58s ago$/);
    assert.equal(buildTree([], { toolCallsOnly: true, now: NOW }).length, 0);
  });

  it('the detail page escapes prompts, tool inputs and names, and allows no scripts', () => {
    const hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> & "quotes" \'too\'';
    const html = renderDetail(
      {
        kind: 'record',
        record: record('r9', {
          prompt: hostile,
          model: '<b>model</b>',
          toolCalls: [
            { id: 'c1', name: '<i>tool</i>', server: 'x', input: { q: hostile }, injected: false, at: '' },
          ],
        }),
      },
      'https://webview.example',
    );
    assert.ok(!html.includes('<script>alert'), 'no live script');
    assert.ok(!html.includes('<img'), 'no live image');
    assert.ok(!html.includes('<b>model'), 'model name escaped');
    assert.ok(!html.includes('<i>tool'), 'tool name escaped');
    assert.ok(html.includes(escapeHtml(hostile)));
    assert.match(
      html,
      /Content-Security-Policy" content="default-src 'none'; style-src https:\/\/webview\.example 'unsafe-inline'/,
    );
    assert.match(html, /<h2>Tool calls \(1\)<\/h2>/);
    assert.equal(escapeHtml('<a href="x">\'&'), '&#60;a href=&#34;x&#34;&#62;&#39;&#38;');
  });

  it('before the record is stored the page shows what live events said, with a note', () => {
    const [item] = items();
    const html = renderDetail({ kind: 'live', item: item!, note: 'Loading the stored record…' }, 'csp');
    assert.match(html, /Loading the stored record…/);
    assert.match(html, /The prompt is shown once the record is stored/);
    assert.match(html, /read_file/);
  });
});
