import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';
import type { InterceptionStart } from '../../server/core/facts';
import { EventBus } from '../../server/events/bus';
import { InterceptionEvents } from '../../server/events/interception-events';
import {
  type BridgeEvent,
  CLOSE_CODES,
  EVENTS_SUBPROTOCOL,
  toolInputPreview as inputPreview,
  KEY_SUBPROTOCOL_PREFIX,
  parseCloseNotice,
} from '../../shared/protocol';
import { emptyUsage } from '../../shared/usage';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';

async function ask(tb: TestBridge, key: string, stream = true): Promise<string> {
  const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      stream,
      messages: [{ role: 'user', content: 'hi' }],
    }),
  });
  await res.text();
  return res.headers.get('x-aibridge-interception-id') ?? '';
}

describe('live events: GET /api/v1/events', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let alice: { key: string; user: { id: string; email: string }; keyId: string };
  let bob: { key: string; user: { id: string; email: string }; keyId: string };

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, {
      liveEvents: { heartbeatMs: 200, closeGraceMs: 1500 },
    });
    alice = await tb.addUser('alice-live@example.com', { team: 'live' });
    bob = await tb.addUser('bob-live@example.com', { team: 'other' });
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  it('says hello, then started, progress, tool.call and ended for a streamed request with a tool call', async () => {
    const c = liveClient(tb.url, { key: alice.key });
    const hello = await c.next('hello');
    assert.equal(hello.protocolVersion, 1);
    assert.equal(hello.user.email, 'alice-live@example.com');
    assert.equal(hello.heartbeatMs, 200);
    assert.ok(Math.abs(Date.parse(hello.serverTime) - Date.now()) < 5000);

    upstream.next({ kind: 'tool', name: 'mcp__files__read_file', input: { path: '/etc/motd' } });
    const id = await ask(tb, alice.key);
    const ended = await c.next('interception.ended', (e) => e.interceptionId === id);
    assert.equal(ended.status, 'ok');
    assert.deepEqual(ended.usage, { input: 25, output: 12, cacheRead: 100, cacheWrite: 7, reasoning: 0 });
    assert.equal(typeof ended.costUsd, 'number');
    assert.equal(ended.userEmail, 'alice-live@example.com');
    assert.equal(ended.model, 'claude-sonnet-4-6');

    const mine = c.events.filter((e) => 'interceptionId' in e && e.interceptionId === id).map((e) => e.type);
    assert.equal(mine[0], 'interception.started');
    assert.ok(mine.includes('interception.progress'), `no progress in ${mine}`);
    assert.deepEqual(mine.slice(-2), ['tool.call', 'interception.ended']);
    const call = await c.next('tool.call', (e) => 'interceptionId' in e && e.interceptionId === id);
    assert.equal(call.name, 'mcp__files__read_file');
    assert.equal(call.server, 'files');
    assert.equal(call.injected, false);
    assert.equal(call.inputPreview, '{"path":"/etc/motd"}');
    const progress = await c.next('interception.progress', (e) => e.interceptionId === id);
    assert.equal(progress.usage.input, 25);
    await c.close();
  });

  it('reports non-streamed requests too (started and ended, no progress)', async () => {
    const c = liveClient(tb.url, { key: alice.key });
    await c.next('hello');
    const id = await ask(tb, alice.key, false);
    await c.next('interception.ended', (e) => e.interceptionId === id);
    const types = c.events.filter((e) => 'interceptionId' in e).map((e) => e.type);
    assert.deepEqual(types, ['interception.started', 'interception.ended']);
    await c.close();
  });

  it('accepts the key as a subprotocol for browsers, and selects aibridge.v1 without echoing the key', async () => {
    const c = liveClient(tb.url, {
      protocols: [EVENTS_SUBPROTOCOL, `${KEY_SUBPROTOCOL_PREFIX}${alice.key}`],
    });
    const hello = await c.next('hello');
    assert.equal(hello.user.email, 'alice-live@example.com');
    assert.equal(c.ws.protocol, EVENTS_SUBPROTOCOL);
    await c.close();
  });

  it('closes bad auth with 4001 and too many bad keys with 4029', async () => {
    for (const opts of [{}, { key: 'aib_nope' }, { key: `aib_${'Q'.repeat(43)}` }]) {
      const c = liveClient(tb.url, opts);
      const { code, reason } = await c.closed;
      assert.equal(code, CLOSE_CODES.unauthorized.code, JSON.stringify(opts));
      assert.ok(reason.length > 0);
      assert.equal(c.events.length, 0);
    }
    const c = liveClient(tb.url, { protocols: [EVENTS_SUBPROTOCOL, `${KEY_SUBPROTOCOL_PREFIX}aib_bad`] });
    assert.equal((await c.closed).code, 4001);

    const throttled = await startBridge(upstream.url, { AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '2' });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 4; i++)
        codes.push((await liveClient(throttled.url, { key: 'aib_bad' }).closed).code);
      assert.deepEqual(codes.slice(0, 2), [4001, 4001]);
      assert.equal(codes[3], CLOSE_CODES.rateLimited.code);

      // The wait comes as a field of the close notice sent just before the close, not as text to parse.
      const ws = new WebSocket(
        `${throttled.url.replace(/^http/, 'ws')}/api/v1/events`,
        [EVENTS_SUBPROTOCOL],
        {
          headers: { authorization: 'Bearer aib_bad' },
        },
      );
      const messages: string[] = [];
      ws.on('message', (d) => messages.push(d.toString()));
      const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
      assert.equal(code, CLOSE_CODES.rateLimited.code);
      assert.equal(messages.length, 1, `one close notice, got ${messages}`);
      const notice = parseCloseNotice(messages[0] as string);
      assert.ok(notice, messages[0]);
      assert.equal(notice.closeCode, 4029);
      assert.equal(notice.reason, 'rateLimited');
      assert.match(notice.message, /Too many invalid keys/);
      assert.ok(
        typeof notice.retryAfter === 'number' && notice.retryAfter >= 1 && notice.retryAfter <= 60,
        String(notice.retryAfter),
      );
    } finally {
      await throttled.close();
    }
  });

  it('closes a socket whose key is revoked while it is connected', async () => {
    const carol = await tb.addUser('carol-live@example.com');
    const c = liveClient(tb.url, { key: carol.key });
    await c.next('hello');
    await tb.api('DELETE', `/api/v1/keys/${carol.keyId}`, tb.adminKey);
    const { code, reason } = await c.closed;
    assert.equal(code, 4001);
    assert.match(reason, /revoked/);
  });

  it('members see only their own events; admins everyone, or one user with ?user=', async () => {
    const a = liveClient(tb.url, { key: alice.key });
    const b = liveClient(tb.url, { key: bob.key });
    const admin = liveClient(tb.url, { key: tb.adminKey });
    const adminOnBob = liveClient(tb.url, {
      key: tb.adminKey,
      query: `user=${encodeURIComponent(bob.user.email)}`,
    });
    await Promise.all([a.next('hello'), b.next('hello'), admin.next('hello'), adminOnBob.next('hello')]);
    const idA = await ask(tb, alice.key);
    const idB = await ask(tb, bob.key);
    await admin.next('interception.ended', (e) => e.interceptionId === idA);
    await admin.next('interception.ended', (e) => e.interceptionId === idB);
    await a.next('interception.ended', (e) => e.interceptionId === idA);
    await b.next('interception.ended', (e) => e.interceptionId === idB);
    await adminOnBob.next('interception.ended', (e) => e.interceptionId === idB);
    const ids = (c: typeof a): Set<string> =>
      new Set(c.events.flatMap((e) => ('interceptionId' in e ? [e.interceptionId] : [])));
    assert.deepEqual([...ids(a)], [idA]);
    assert.deepEqual([...ids(b)], [idB]);
    assert.deepEqual([...ids(adminOnBob)], [idB]);
    await Promise.all([a.close(), b.close(), admin.close(), adminOnBob.close()]);
    // Access-log entries are listed once durable (the store's flush window), so look until then.
    await eventually(
      async () => {
        const log = await tb.api<{ items: { route: string; subjectUserId: string | null }[] }>(
          'GET',
          '/api/v1/audit/access-log',
          tb.adminKey,
        );
        assert.equal(log.status, 200);
        return log.body.items.some(
          (i) => i.route === 'GET /api/v1/events' && i.subjectUserId === bob.user.id,
        );
      },
      { what: "the admin's watch of bob in the access log" },
    );
  });

  it('team and org alerts reach the team and everyone; another team does not see them', async () => {
    const a = liveClient(tb.url, { key: alice.key, query: 'types=budget.alert' });
    const b = liveClient(tb.url, { key: bob.key, query: 'types=budget.alert' });
    await Promise.all([a.next('hello'), b.next('hello')]);
    const alert = (team: string | null, id: string): BridgeEvent => ({
      type: 'budget.alert',
      alert: {
        id,
        kind: 'budget',
        rule: 'budget_threshold',
        at: new Date().toISOString(),
        userId: null,
        userEmail: null,
        team,
        observed: 8,
        baseline: 10,
        unit: 'usd',
        message: 'spent 80%',
        budgetId: 'bud_1',
      },
    });
    tb.bridge.bus.publish(alert('live', 'alr_team'), { userId: null, team: 'live' });
    tb.bridge.bus.publish(alert(null, 'alr_org'), { userId: null, team: null });
    await a.next('budget.alert', (e) => e.alert.id === 'alr_org');
    await b.next('budget.alert', (e) => e.alert.id === 'alr_org');
    const seen = (c: typeof a): string[] =>
      c.events.flatMap((e) => (e.type === 'budget.alert' ? [e.alert.id] : []));
    assert.deepEqual(seen(a), ['alr_team', 'alr_org']);
    assert.deepEqual(seen(b), ['alr_org']);
    await Promise.all([a.close(), b.close()]);
  });

  it('delivers mcp.warning (upstream error bodies) and operations alerts to admins only, not to members', async () => {
    const member = liveClient(tb.url, { key: alice.key });
    const admin = liveClient(tb.url, { key: tb.adminKey });
    await Promise.all([member.next('hello'), admin.next('hello')]);
    const warning = (message: string): BridgeEvent => ({
      type: 'mcp.warning',
      at: new Date().toISOString(),
      server: 'internal-tools',
      message,
    });
    tb.bridge.bus.publish(warning('401 from http://10.0.0.7/mcp: {"error":"bad token"}'), {
      userId: alice.user.id,
      team: null,
    });
    tb.bridge.bus.publish(warning('connect ECONNREFUSED 10.0.0.8:443'), { userId: null, team: null });
    // An operations alert about nobody in particular (a provider refusing the organisation's key).
    tb.bridge.bus.publish(
      {
        type: 'alert',
        alert: {
          id: 'alr_ops',
          kind: 'upstream',
          rule: 'upstream_key_auth_failed',
          at: new Date().toISOString(),
          userId: null,
          userEmail: null,
          team: null,
          observed: 1,
          baseline: 0,
          unit: 'requests',
          message: 'Provider instance "anthropic" refused its key "primary"',
          budgetId: null,
        },
      },
      { userId: null, team: null },
    );
    // Then an event the member may see: events arrive in order, so once it is in, any warning would be too.
    tb.bridge.bus.publish(
      {
        type: 'budget.alert',
        alert: {
          id: 'alr_after_warnings',
          kind: 'budget',
          rule: 'budget_threshold',
          at: new Date().toISOString(),
          userId: null,
          userEmail: null,
          team: null,
          observed: 8,
          baseline: 10,
          unit: 'usd',
          message: 'spent 80%',
          budgetId: 'bud_1',
        },
      },
      { userId: null, team: null },
    );
    await member.next('budget.alert', (e) => e.alert.id === 'alr_after_warnings');
    await admin.next('budget.alert', (e) => e.alert.id === 'alr_after_warnings');
    assert.deepEqual(
      member.events.filter((e) => e.type === 'mcp.warning'),
      [],
    );
    assert.equal(admin.events.filter((e) => e.type === 'mcp.warning').length, 2);
    assert.deepEqual(
      member.events.filter((e) => e.type === 'alert'),
      [],
      'operations alerts are admins’',
    );
    assert.equal(admin.events.filter((e) => e.type === 'alert').length, 1);
    await Promise.all([member.close(), admin.close()]);
  });

  it('refuses what a member may not watch (4003) and unknown filters (4400); ?types= narrows', async () => {
    const other = liveClient(tb.url, { key: alice.key, query: `user=${bob.user.id}` });
    assert.equal((await other.closed).code, CLOSE_CODES.forbidden.code);
    const team = liveClient(tb.url, { key: alice.key, query: 'team=other' });
    assert.equal((await team.closed).code, 4003);
    const bogus = liveClient(tb.url, { key: alice.key, query: 'types=interception.ended,nope' });
    assert.equal((await bogus.closed).code, CLOSE_CODES.badRequest.code);
    const nobody = liveClient(tb.url, { key: tb.adminKey, query: 'user=nobody@example.com' });
    assert.equal((await nobody.closed).code, 4400);

    const self = liveClient(tb.url, {
      key: alice.key,
      query: `user=${alice.user.email}&types=interception.ended`,
    });
    await self.next('hello');
    const id = await ask(tb, alice.key);
    await self.next('interception.ended', (e) => e.interceptionId === id);
    assert.deepEqual(
      self.events.map((e) => e.type),
      ['hello', 'interception.ended'],
    );
    await self.close();
  });

  it('answers a plain GET (no upgrade) with 400, and 401 without a key', async () => {
    assert.equal((await tb.api('GET', '/api/v1/events', alice.key)).status, 400);
    assert.equal((await tb.api('GET', '/api/v1/events', null)).status, 401);
    // An upgrade to any other path is refused.
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${tb.url}/api/v1/nope`, {
        headers: { upgrade: 'websocket', connection: 'upgrade' },
      });
      req.on('response', (res) => resolve(res.statusCode ?? 0));
      req.on('upgrade', () => reject(new Error('upgraded')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 404);
  });

  it('drops a client that stops reading, without slowing the publisher', async () => {
    // A bridge of its own with the usual heartbeat: with this suite's 200 ms one, the paused
    // client would be let go for its missing pongs before its queue could show it is slow.
    const tb = await startBridge(upstream.url);
    const slow = liveClient(tb.url, { key: tb.adminKey });
    const fast = liveClient(tb.url, { key: tb.adminKey });
    await Promise.all([slow.next('hello'), fast.next('hello')]);
    // Stop reading: the kernel buffers fill, then the server's queue for this socket grows.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big: BridgeEvent = {
      type: 'alert',
      alert: {
        id: 'alr_big',
        kind: 'anomaly',
        rule: 'request_burst',
        at: new Date().toISOString(),
        userId: alice.user.id,
        userEmail: alice.user.email,
        team: 'live',
        observed: 1,
        baseline: 1,
        unit: 'requests',
        message: 'x'.repeat(16 * 1024),
        budgetId: null,
      },
    };
    const started = performance.now();
    let n = 0;
    const dropped = (): boolean => tb.logs.some((l) => l.includes('dropped a slow consumer'));
    // Bounded: the socket must be dropped within a few tens of MB.
    for (; n < 4000 && !dropped(); n++) {
      tb.bridge.bus.publish(big, { userId: alice.user.id, team: 'live' });
      // Yield often enough (~80 KB, far below the 1 MiB a client may have queued) that the
      // healthy client keeps up even when the machine is busy (at ~300 KB a yield, a loaded CI
      // machine once dropped it too).
      if (n % 5 === 4) await new Promise((r) => setImmediate(r));
    }
    const publishMs = performance.now() - started;
    assert.ok(dropped(), `not dropped after ${n} events`);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const { code } = await slow.closed;
    assert.equal(code, CLOSE_CODES.slowConsumer.code);
    assert.ok(publishMs < 5000, `publishing took ${publishMs}ms`);
    // The healthy client got everything and stays connected.
    await fast.next('alert', () => fast.events.filter((e) => e.type === 'alert').length >= n, 10_000);
    assert.equal(fast.ws.readyState, WebSocket.OPEN);
    await fast.close();
    await tb.close();
  });

  it('drops a peer that stops answering pings', async () => {
    const c = liveClient(tb.url, { key: alice.key });
    await c.next('hello');
    // A dead peer: no pongs (ws answers pings automatically, so stop it from seeing them).
    const socket = (c.ws as unknown as { _socket: { pause(): void } })._socket;
    socket.pause();
    const started = Date.now();
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (tb.bridge.bus.size === 0 || Date.now() - started > 3000) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    });
    // Two heartbeats at most (200 ms each) and the bridge has let go of it.
    assert.ok(Date.now() - started < 1500, `still subscribed after ${Date.now() - started}ms`);
    c.ws.terminate();
  });

  it('closes every socket with 1001 on shutdown, without holding the close up', async () => {
    const tb2 = await startBridge(upstream.url);
    const c = liveClient(tb2.url, { key: tb2.adminKey });
    await c.next('hello');
    const started = Date.now();
    await tb2.close();
    assert.equal((await c.closed).code, CLOSE_CODES.goingAway.code);
    assert.ok(Date.now() - started < 3000);
  });
});

const quietLog = { error: () => undefined, warn: () => undefined };

describe('interception events (unit)', () => {
  it('a listener that throws is logged, and neither the publisher nor the other listeners see it', () => {
    const errors: { obj: object; msg: string }[] = [];
    const bus = new EventBus({ error: (obj, msg) => errors.push({ obj, msg }), warn: () => undefined });
    const seen: string[] = [];
    bus.subscribe(() => {
      throw new Error('listener broke');
    });
    bus.subscribe((e) => seen.push(e.type));
    const event = {
      type: 'hello',
      protocolVersion: 1,
      user: { id: 'u', email: 'u@x', role: 'member', team: null },
      serverTime: '',
      heartbeatMs: 1,
    } as const;
    bus.publish(event, { userId: 'u', team: null });
    assert.deepEqual(seen, ['hello']);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.msg, /listener failed/);
    assert.equal((errors[0]!.obj as { err: Error }).err.message, 'listener broke');
  });

  it('throttles progress to 4 a second per stream, and only when usage changed', () => {
    const bus = new EventBus(quietLog);
    const seen: BridgeEvent[] = [];
    bus.subscribe((e) => seen.push(e));
    let now = 1000;
    const events = new InterceptionEvents(bus, () => now);
    const start = {
      id: 'int_1',
      principal: {
        user: { id: 'u', email: 'u@x', name: null, team: null, role: 'member' as const, createdAt: '' },
        key: {} as never,
      },
      provider: 'anthropic',
      api: 'messages' as const,
      client: 'unknown',
      request: { model: 'm', prompt: null, sessionId: null, maxOutputTokens: null },
      startedAt: new Date(),
    } as unknown as InterceptionStart;
    const tick = events.progress(start);
    const usage = emptyUsage();
    const meter = { result: () => ({ usage: { ...usage } }) };
    for (let i = 0; i < 1000; i++) {
      usage.output = i;
      now += 2; // 500 events a second, for two seconds
      tick(meter);
    }
    assert.ok(seen.length >= 7 && seen.length <= 9, `${seen.length} progress events in 2s`);
    const before = seen.length;
    now += 10_000;
    tick(meter);
    now += 1000;
    tick(meter); // usage unchanged: nothing
    assert.equal(seen.length, before + 1);
  });

  it('publishes nothing to build when nobody listens', () => {
    const bus = new EventBus(quietLog);
    const events = new InterceptionEvents(bus);
    let asked = 0;
    const tick = events.progress({} as never);
    tick({
      result: () => {
        asked++;
        return { usage: emptyUsage() };
      },
    });
    assert.equal(asked, 0);
  });

  it('cuts tool inputs to a short preview', () => {
    assert.equal(inputPreview({ a: 1 }), '{"a":1}');
    assert.equal(inputPreview('raw text'), 'raw text');
    const long = inputPreview({ text: 'y'.repeat(1000) });
    assert.equal(long.length, 200);
    assert.ok(long.endsWith('…'));
  });
});

describe('live events: a key revoked closes its sockets at once, not at the next heartbeat', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    upstream = await new AnthropicMock().start();
    // Heartbeats far apart: what closes the socket is the change itself.
    tb = await startBridge(upstream.url, {}, undefined, { liveEvents: { heartbeatMs: 60_000 } });
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  it('a revoked key: 4001 within a second; the user’s other key’s socket stays', async () => {
    const dana = await tb.addUser('dana-live@example.com');
    const second = await tb.api('POST', `/api/v1/users/${dana.user.email}/keys`, tb.adminKey, {
      name: 'second',
    });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    const other = liveClient(tb.url, { key: (second.body as { key: string }).key });
    await other.next('hello');
    const c = liveClient(tb.url, { key: dana.key });
    await c.next('hello');
    const t0 = Date.now();
    assert.equal((await tb.api('DELETE', `/api/v1/keys/${dana.keyId}`, tb.adminKey)).status, 200);
    const { code, reason } = await c.closed;
    assert.equal(code, 4001);
    assert.match(reason, /revoked/);
    assert.ok(Date.now() - t0 < 1000, `closed after ${Date.now() - t0} ms`);
    // The other key still works: its socket was checked and kept.
    await ask(tb, (second.body as { key: string }).key);
    await other.next('interception.started');
    other.close();
  });
});
