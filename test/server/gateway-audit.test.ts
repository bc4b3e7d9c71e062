import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { CreatedKey } from '../../shared/identity';
import type { GatewayToolCall } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { testPostgres } from '../helpers/postgres';

const BIN = path.resolve('dist/aibridge.cjs');
const DAY = 86_400_000;

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.resume();
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

function call(n: number, at: number, user: { id: string; email: string }): GatewayToolCall {
  return {
    id: `gwc_audit_${n}`,
    at: new Date(at).toISOString(),
    userId: user.id,
    userEmail: user.email,
    team: 'red',
    keyId: 'key_x',
    client: 'claude-code',
    sessionId: null,
    name: 'docs__search',
    server: 'docs',
    tool: 'search',
    input: { q: `=cmd ${n}` },
    outcome: 'ok',
    durationMs: n,
    resultBytes: 10,
    error: null,
  };
}

/** MCP gateway calls in the audit machinery: retention's window and `audit export --kind gateway-calls`. */
describe('MCP gateway calls in retention and audit export', function () {
  this.timeout(120_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let url: string;
  let dev: { key: string; user: { id: string; email: string } };
  let other: { key: string; user: { id: string; email: string } };

  let oldKey: CreatedKey;
  let recentKey: CreatedKey;

  before(async () => {
    upstream = await new AnthropicMock().start();
    url = await (await testPostgres()).createDatabase('gwaudit');
    const first = await startBridge(upstream.url, { AIBRIDGE_DATABASE_URL: url });
    dev = await first.addUser('gw-audit-dev@example.com', { team: 'red' });
    other = await first.addUser('gw-audit-other@example.com', { team: 'blue' });
    const now = Date.now();
    // Two calls far older than the window, three inside it (one of another user's).
    await first.bridge.store.appendGatewayCall(call(0, now - 100 * DAY, dev.user));
    await first.bridge.store.appendGatewayCall(call(1, now - 95 * DAY, dev.user));
    await first.bridge.store.appendGatewayCall(call(2, now - 2 * DAY, dev.user));
    await first.bridge.store.appendGatewayCall(call(3, now - DAY, other.user));
    await first.bridge.store.appendGatewayCall(call(4, now - 1000, dev.user));
    // Keys: one revoked long before the window, one inside it.
    const devUser = (await first.bridge.store.getUserById(dev.user.id))!;
    oldKey = await first.bridge.identity.issueKey(devUser, { name: 'old' });
    recentKey = await first.bridge.identity.issueKey(devUser, { name: 'recent' });
    await first.bridge.store.revokeKey(oldKey.id, new Date(now - 100 * DAY).toISOString());
    await first.bridge.store.revokeKey(recentKey.id, new Date(now - DAY).toISOString());
    await first.close();
    // The same data, now with a 30-day retention: pruned at start, like interceptions.
    tb = await startBridge(
      upstream.url,
      { AIBRIDGE_DATABASE_URL: url, AIBRIDGE_AUDIT_RETENTION_DAYS: '30' },
      first.dataDir,
    );
  });
  after(async () => {
    await tb?.close();
    await upstream?.stop();
  });

  it('retention prunes gateway calls older than the audit window and keeps the rest', async () => {
    const ids = await eventually(async () => {
      const r = await tb.api<{ items: { id: string }[] }>(
        'GET',
        '/api/v1/tool-calls?via=gateway',
        tb.adminKey,
      );
      const got = r.body.items.map((c) => c.id);
      return got.length === 3 ? got : undefined;
    });
    assert.deepEqual(ids, ['gwc_audit_4', 'gwc_audit_3', 'gwc_audit_2']);
    assert.ok(tb.logs.some((l) => l.includes('retention: pruned old MCP gateway calls')));
  });

  it('retention deletes keys revoked before the window, and keeps those revoked inside it', async () => {
    await eventually(async () =>
      (await tb.bridge.store.getKey(oldKey.id)) === undefined ? true : undefined,
    );
    assert.equal((await tb.bridge.store.getKey(recentKey.id))?.name, 'recent');
    const listed = await tb.api<{ items: { id: string }[] }>('GET', '/api/v1/me/keys', dev.key);
    assert.deepEqual(
      listed.body.items.map((k) => k.id).filter((id) => id === oldKey.id || id === recentKey.id),
      [recentKey.id],
    );
    const res = await askMessages(tb.url, oldKey.key);
    assert.equal(res.status, 401);
    assert.ok(
      tb.logs.some((l) => l.includes('retention: deleted keys revoked or expired before the window')),
    );
  });

  it('lists gateway calls whose arguments hold a text (q), newest first, members only their own', async () => {
    const ids = async (query: string, key = tb.adminKey): Promise<string[]> => {
      const res = await tb.api<{ items: { id: string }[] }>(
        'GET',
        `/api/v1/tool-calls?via=gateway&${query}`,
        key,
      );
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.items.map((c) => c.id);
    };
    assert.deepEqual(await ids('q=CMD'), ['gwc_audit_4', 'gwc_audit_3', 'gwc_audit_2']);
    assert.deepEqual(await ids('q=cmd%204'), ['gwc_audit_4']);
    assert.deepEqual(await ids('q=cmd&limit=1'), ['gwc_audit_4']);
    assert.deepEqual(await ids('q=cmd&tool=docs__search&server=docs'), [
      'gwc_audit_4',
      'gwc_audit_3',
      'gwc_audit_2',
    ]);
    assert.deepEqual(await ids('q=nothing-like-it'), []);
    assert.deepEqual(await ids('q=cmd', dev.key), ['gwc_audit_4', 'gwc_audit_2']);
  });

  it('exports gateway calls as JSONL and CSV (kind=gateway-calls), members only their own', async () => {
    const jsonl = await fetch(`${tb.url}/api/v1/audit/export?kind=gateway-calls`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    assert.equal(jsonl.status, 200);
    assert.match(jsonl.headers.get('content-disposition') ?? '', /aibridge-gateway-calls-.*\.jsonl/);
    const rows = (await jsonl.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as GatewayToolCall);
    assert.deepEqual(
      rows.map((r) => r.id),
      ['gwc_audit_2', 'gwc_audit_3', 'gwc_audit_4'],
      'oldest first',
    );
    assert.deepEqual(rows[0]!.input, { q: '=cmd 2' });

    const csv = await fetch(`${tb.url}/api/v1/audit/export?kind=gateway-calls&format=csv`, {
      headers: { authorization: `Bearer ${dev.key}` },
    });
    const lines = (await csv.text()).trim().split('\r\n');
    assert.equal(
      lines[0],
      'id,at,userEmail,team,keyId,client,sessionId,name,server,tool,outcome,durationMs,resultBytes,error,policy,input,kind',
    );
    // A tool call's kind column says so (reads say `resource` or `prompt`).
    assert.ok(
      lines.slice(1).every((l) => l.endsWith(',tool')),
      lines.join('\n'),
    );
    assert.equal(lines.length, 3, 'the member sees their own two calls');
    assert.ok(lines.every((l) => !l.includes('gw-audit-other')));

    // The interceptions' export is unchanged by default.
    const plain = await fetch(`${tb.url}/api/v1/audit/export?format=csv`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    assert.match(await plain.text(), /^seq,id,startedAt/);
    const bad = await fetch(`${tb.url}/api/v1/audit/export?kind=everything`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    assert.equal(bad.status, 400);
  });

  it('`aibridge audit export --kind gateway-calls` streams them', async () => {
    const r = await cli(['audit', 'export', '--kind', 'gateway-calls', '--user', dev.user.email], {
      AIBRIDGE_URL: tb.url,
      AIBRIDGE_ADMIN_KEY: tb.adminKey,
    });
    assert.equal(r.code, 0);
    assert.deepEqual(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as GatewayToolCall).id),
      ['gwc_audit_2', 'gwc_audit_4'],
    );
  });
});
