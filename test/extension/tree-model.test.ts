import assert from 'node:assert/strict';
import { escapeHtml, renderDetail } from '../../extension/audit/detail-html';
import { buildTree, escapeMarkdown } from '../../extension/audit/tree-model';
import { BridgeModel } from '../../extension/model/bridge-model';
import type { Interception } from '../../shared/interception';
import { record, ref, usage } from './fixtures';

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
        ['int:r2', 'claude-sonnet-4-6 · read_file, Bash', 'claude-code · 1.5k tok · $0.02 · 1m ago'],
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

  it("a row names its request's tool calls: the first two, then +N, long names cut short", () => {
    const call = (id: string, name: string) => ({
      id,
      name,
      server: null,
      input: {},
      injected: false,
      at: '2026-03-10T09:04:01.000Z',
    });
    const m = new BridgeModel();
    m.seedHistory([
      record('one', { costUsd: 0.01, toolCalls: [call('c1', 'create_pull_request')] }),
      record('many', {
        toolCalls: [
          call('c1', 'read_file'),
          call('c2', 'read_file'),
          call('c3', 'Bash'),
          call('c4', 'grep'),
          call('c5', 'write_file'),
        ],
      }),
      record('long', { toolCalls: [call('c1', `mcp__github__${'x'.repeat(200)}`)] }),
      record('none', { toolCalls: [] }),
    ]);
    const tree = buildTree(m.items, { toolCallsOnly: false, now: NOW });
    const labels = Object.fromEntries(tree.map((n) => [n.interceptionId, n.label]));
    assert.equal(labels.one, 'claude-sonnet-4-6 · create_pull_request');
    assert.match(tree.find((n) => n.interceptionId === 'one')!.description, /· \$0\.01 ·/);
    assert.equal(labels.many, 'claude-sonnet-4-6 · read_file, Bash +2');
    assert.equal(labels.none, 'claude-sonnet-4-6');
    assert.ok(labels.long!.length <= 'claude-sonnet-4-6 · '.length + 32, labels.long);
    assert.match(labels.long!, /^claude-sonnet-4-6 · mcp__github__x+…$/);
    const huge = new BridgeModel();
    huge.seedHistory([record('big', { model: 'm'.repeat(500_000) })]);
    const [big] = buildTree(huge.items, { toolCallsOnly: false, now: NOW });
    assert.ok(big!.label.length <= 80, 'a 500 KB model name is cut short on the row');
    assert.ok(big!.tooltip.length < 2000, 'and in its tooltip');
  });

  it('tooltips show hostile model, tool and server names literally: no link, command, HTML or emphasis', () => {
    const hostile = [
      '[x](command:aibridge.signOut)',
      '<img src=x onerror=alert(1)>',
      '**bold** _em_ `code` ~~s~~',
      '$(gear) ![i](https://evil.example/i.png) <https://evil.example>',
      'line\n# heading',
    ];
    const m = new BridgeModel();
    m.seedHistory(
      hostile.map((name, i) =>
        record(`h${i}`, {
          model: name,
          client: name,
          toolCalls: [
            {
              id: 'c1',
              name,
              server: name,
              input: { q: name },
              injected: true,
              at: '2026-03-10T09:04:01.000Z',
            },
          ],
        }),
      ),
    );
    const tree = buildTree(m.items, { toolCallsOnly: false, now: NOW });
    const tooltips = tree.flatMap((n) => [n.tooltip, ...n.children.map((c) => c.tooltip)]);
    assert.equal(tooltips.length, hostile.length * 2);
    for (const t of tooltips) {
      // The fenced JSON block is literal by construction; everything before it is Markdown prose.
      const prose = t.split('```')[0]!;
      assert.doesNotMatch(prose, /\]\((command|https):|(?<!\\)<(img|https:)/, t);
      for (const name of hostile) assert.ok(!prose.includes(name), `${JSON.stringify(name)} is live in ${t}`);
    }
    for (const name of hostile) assert.ok(tooltips.some((t) => t.includes(escapeMarkdown(name))));
    // Every ASCII punctuation character is backslash-escaped (CommonMark renders `\x` as a literal x).
    assert.equal(escapeMarkdown('[a](b) <c> *d*'), '\\[a\\]\\(b\\) \\<c\\> \\*d\\*');
    assert.equal(escapeMarkdown('two\nlines'), 'two lines');
  });

  it("tool calls sharing an id (Gemini's are known by their name) are all listed, each row with its own id", () => {
    const m = new BridgeModel();
    const call = (path: string) => ({
      id: 'read_file',
      name: 'read_file',
      server: null,
      input: { path },
      injected: false,
      at: '2026-03-10T09:04:01.000Z',
    });
    m.seedHistory([record('g1', { model: 'gemini-2.5-pro', toolCalls: [call('/a'), call('/b')] })]);
    const live = ref('g2', {
      provider: 'gemini',
      api: 'generateContent',
      model: 'gemini-2.5-pro',
      client: 'gemini-cli',
    });
    for (const path of ['/c', '/d', '/d'])
      m.apply({
        type: 'tool.call',
        ...live,
        at: '2026-03-10T09:04:30.000Z',
        callId: 'read_file',
        name: 'read_file',
        server: null,
        injected: false,
        inputPreview: JSON.stringify({ path }),
      });
    assert.equal(m.items.find((i) => i.id === 'g2')?.toolCalls.length, 2, 'the same call twice is one');
    for (const toolCallsOnly of [false, true]) {
      const tree = buildTree(m.items, { toolCallsOnly, now: NOW });
      const ids = tree.flatMap((n) => [n.id, ...n.children.map((c) => c.id)]);
      // VS Code refuses a tree with two rows of one id: the whole view would fail.
      assert.equal(new Set(ids).size, ids.length, ids.join(' '));
      assert.equal(ids.filter((id) => id.startsWith('tool:')).length, 4);
    }
    const rows = buildTree(m.items, { toolCallsOnly: false, now: NOW });
    const g1 = rows.find((n) => n.id === 'int:g1');
    const g2 = rows.find((n) => n.id === 'int:g2');
    assert.deepEqual(
      g1!.children.map((c) => c.id),
      ['tool:g1:read_file', 'tool:g1:read_file#2'],
    );
    assert.deepEqual(
      g2!.children.map((c) => c.description),
      ['client tool · not injected · {"path":"/c"}', 'client tool · not injected · {"path":"/d"}'],
    );
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
          // A hostile bridge's usage is not a number: shown as one, never as its markup.
          usage: {
            input: '<a href="https://phish.example">sign in again</a>',
            output: 1,
            cacheRead: 0,
            cacheWrite: 0,
            reasoning: 0,
          } as unknown as Interception['usage'],
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
    assert.ok(!html.includes('<a href'), 'a usage value is no markup');
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
