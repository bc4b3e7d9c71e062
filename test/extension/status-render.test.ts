import assert from 'node:assert/strict';
import { formatAge, formatCost, formatTokens } from '../../extension/format';
import { COMMANDS } from '../../extension/ids';
import { BridgeModel } from '../../extension/model/bridge-model';
import { renderStatus } from '../../extension/status/status-render';
import { ALICE, budget, ended, URL, usage, usageMe } from './fixtures';

function live(): BridgeModel {
  const m = new BridgeModel();
  m.apply({ type: 'hello', protocolVersion: 1, user: ALICE, serverTime: '', heartbeatMs: 1 });
  m.setConnection({ status: 'live', since: 1 });
  return m;
}

describe('extension: status bar rendering', () => {
  it('signed out: a sign-in button', () => {
    const v = renderStatus(new BridgeModel(), null);
    assert.equal(v.text, '$(account) AI Bridge: Sign In');
    assert.equal(v.command, COMMANDS.signIn);
    assert.equal(v.severity, 'normal');
  });

  it('live: tokens and cost for the period; the tooltip breaks spend down by model; click opens the audit view', () => {
    const m = live();
    m.seedSpend(
      usageMe({
        byModel: [
          {
            key: 'claude-sonnet-4-6',
            requests: 1,
            usage: usage(900, 100),
            costUsd: 0.4,
            unpricedRequests: 0,
            userBilledCostUsd: 0,
            userBilledRequests: 0,
          },
          {
            key: 'gpt-5',
            requests: 1,
            usage: usage(100, 100),
            costUsd: 0.1,
            unpricedRequests: 0,
            userBilledCostUsd: 0,
            userBilledRequests: 0,
          },
        ],
      }),
    );
    const v = renderStatus(m, URL);
    assert.equal(v.text, '$(pulse) 1.2k tok · $0.50');
    assert.equal(v.command, COMMANDS.showAudit);
    assert.equal(v.severity, 'normal');
    assert.match(
      v.tooltip,
      /\| claude\\-sonnet\\-4\\-6 \| 1 \| 1k \| \$0\\\.40 \|\n\| gpt\\-5 \| 1 \| 200 \| \$0\\\.10 \|/,
    );
    assert.match(v.tooltip, /\*\*today\*\*: 2 requests/);
    assert.match(v.tooltip, /alice@example\\\.com/);
    assert.match(v.accessibilityLabel, /live/);
  });

  it('an ended event changes the text at once', () => {
    const m = live();
    m.seedSpend(usageMe());
    const before = renderStatus(m, URL).text;
    m.apply(ended('i1', '2026-03-10T10:00:00.000Z', usage(30_000, 0), 2));
    const after = renderStatus(m, URL).text;
    assert.notEqual(after, before);
    assert.equal(after, '$(pulse) 31.2k tok · $2.50');
  });

  it('requests at an unknown price show as $? (all of them) or $N+? (some), never as $0', () => {
    const m = live();
    const unpricedRow = {
      key: 'my-finetune',
      requests: 2,
      usage: usage(1000, 200),
      costUsd: 0,
      unpricedRequests: 2,
      userBilledCostUsd: 0,
      userBilledRequests: 0,
    };
    m.seedSpend(usageMe({ costUsd: 0, unpricedRequests: 2, byModel: [unpricedRow] }));
    const all = renderStatus(m, URL);
    assert.equal(all.text, '$(pulse) 1.2k tok · $?');
    assert.match(all.tooltip, /\| my\\-finetune \| 2 \| 1\.2k \| \$\? \|/);
    assert.match(all.tooltip, /1\.2k tokens · \$\? \\\(2 at an unknown price\\\)/);
    assert.match(all.accessibilityLabel, /unknown price/);
    // A priced request on top: at least its cost, and still not the whole story.
    m.apply(ended('i1', '2026-03-10T10:00:00.000Z', usage(1, 1), 0.5));
    assert.equal(renderStatus(m, URL).text, '$(pulse) 1.2k tok · $0.50+?');
    // Priced requests only: the plain amount.
    m.seedSpend(usageMe());
    assert.equal(renderStatus(m, URL).text, '$(pulse) 1.2k tok · $0.50');
  });

  it('shows every connection state', () => {
    const m = live();
    m.seedSpend(usageMe());
    m.setConnection({ status: 'connecting' });
    assert.match(renderStatus(m, URL).text, /^\$\(sync~spin\) /);
    m.setConnection({ status: 'reconnecting', attempt: 2, retryAt: 5, lastError: 'connection lost' });
    const r = renderStatus(m, URL);
    assert.match(r.text, /^\$\(debug-disconnect\) 1\.2k tok · \$0\.50 \(reconnecting\)$/);
    assert.match(r.tooltip, /reconnecting \\\(connection lost\\\)/);
    m.setConnection({ status: 'error', message: 'bad filter', needsSignIn: false });
    assert.equal(renderStatus(m, URL).severity, 'error');
    m.setConnection({ status: 'error', message: 'The key was revoked.', needsSignIn: true });
    const e = renderStatus(m, URL);
    assert.equal(e.text, '$(error) AI Bridge: Sign In Again');
    assert.equal(e.command, COMMANDS.signIn);
  });

  it('turns warning-coloured from 80% of a budget and error-coloured at 100%', () => {
    const m = live();
    m.seedSpend(usageMe({ budgets: [budget(10, 7.9)] }));
    assert.equal(renderStatus(m, URL).severity, 'normal');
    m.seedSpend(usageMe({ budgets: [budget(10, 8)] }));
    const warn = renderStatus(m, URL);
    assert.equal(warn.severity, 'warning');
    assert.match(warn.tooltip, /Budget user u\\_alice day: \$8\\\.00 of \$10\\\.00 \(80%\) \$\(warning\)/);
    // Live spend pushes it over.
    m.apply(ended('i1', '2026-03-10T10:00:00.000Z', usage(1, 1), 2.5));
    assert.equal(renderStatus(m, URL).severity, 'error');
  });

  it('formats tokens, cost and ages compactly', () => {
    assert.deepEqual([0, 950, 1000, 12_345, 999_999, 4_560_000].map(formatTokens), [
      '0',
      '950',
      '1k',
      '12.3k',
      '1M',
      '4.56M',
    ]);
    assert.deepEqual([0, 0.004, 0.5, 12.345, 1234.5, null].map(formatCost), [
      '$0',
      '<$0.01',
      '$0.50',
      '$12.35',
      '$1,235',
      '$?',
    ]);
    const now = Date.parse('2026-03-10T10:00:00.000Z');
    assert.equal(formatAge('2026-03-10T09:59:58.000Z', now), 'just now');
    assert.equal(formatAge('2026-03-10T09:55:00.000Z', now), '5m ago');
    assert.equal(formatAge('2026-03-08T10:00:00.000Z', now), '2d ago');
  });
});
