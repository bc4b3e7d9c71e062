import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocketServer } from 'ws';
import { LiveSocket } from '../../extension/live/live-socket';
import type { ConnectionState } from '../../extension/live/machine';
import type { BridgeEvent } from '../../shared/protocol';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';

/** A TCP proxy in front of the bridge that the test can cut and bring back on the same port (a network loss). */
class Cable {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  connections = 0;

  constructor(private readonly target: number) {}

  async plug(): Promise<void> {
    const server = net.createServer((client) => {
      this.connections++;
      const upstream = net.connect(this.target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = undefined;
  }
}

function watch(live: LiveSocket): {
  states: ConnectionState[];
  events: BridgeEvent[];
  until: (p: (s: ConnectionState) => boolean, ms?: number) => Promise<ConnectionState>;
} {
  const states: ConnectionState[] = [];
  const events: BridgeEvent[] = [];
  live.onEvent((e) => events.push(e));
  live.onState((s) => states.push(s));
  const until = (p: (s: ConnectionState) => boolean, ms = 5000) =>
    new Promise<ConnectionState>((resolve, reject) => {
      if (p(live.state)) return resolve(live.state);
      const timer = setTimeout(() => reject(new Error(`state now ${JSON.stringify(live.state)}`)), ms);
      const sub = live.onState((s) => {
        if (!p(s)) return;
        clearTimeout(timer);
        sub.dispose();
        resolve(s);
      });
    });
  return { states, events, until };
}

describe('extension: live socket against a real bridge', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let cable: Cable;
  let alice: { key: string; keyId: string };
  const sockets: LiveSocket[] = [];
  const open = (key: string): LiveSocket => {
    const s = new LiveSocket({
      url: `http://127.0.0.1:${cable.port}`,
      key,
      query: 'user=me',
      backoff: { baseMs: 50, maxMs: 200, random: Math.random },
      heartbeatSlackMs: 200,
    });
    sockets.push(s);
    return s;
  };

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url, {}, undefined, { liveEvents: { heartbeatMs: 300 } });
    alice = await tb.addUser('alice-socket@example.com');
    cable = new Cable(Number(new URL(tb.url).port));
    await cable.plug();
  });
  afterEach(() => {
    for (const s of sockets.splice(0)) s.dispose();
  });
  after(async () => {
    await cable.cut();
    await tb.close();
    await upstream.stop();
  });

  it('goes live and passes events on', async () => {
    const live = open(alice.key);
    const w = watch(live);
    live.start();
    await w.until((s) => s.status === 'live');
    assert.deepEqual(
      w.states.map((s) => s.status),
      ['connecting', 'live'],
    );
    const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': alice.key,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-6',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    await res.text();
    await eventually(() => w.events.some((e) => e.type === 'interception.ended'), {
      what: 'the interception.ended event',
    });
    assert.equal(w.events[0]?.type, 'hello');
  });

  it('network loss shows reconnecting, retries with backoff, and recovers by itself when the network is back', async () => {
    const live = open(alice.key);
    const w = watch(live);
    live.start();
    await w.until((s) => s.status === 'live');
    await cable.cut();
    const lost = await w.until((s) => s.status === 'reconnecting');
    assert.equal(lost.status === 'reconnecting' && lost.lastError, 'connection lost');
    // A few failed attempts while the cable is out.
    await w.until((s) => s.status === 'reconnecting' && s.attempt >= 3);
    await cable.plug();
    await w.until((s) => s.status === 'live', 5000);
    const hellos = w.events.filter((e) => e.type === 'hello').length;
    assert.equal(hellos, 2);
  });

  it('a refused key stops retrying and asks to sign in again', async () => {
    const live = open(`aib_${'Z'.repeat(43)}`);
    const w = watch(live);
    const before = cable.connections;
    live.start();
    const s = await w.until((x) => x.status === 'error');
    assert.deepEqual(s.status === 'error' && s.needsSignIn, true);
    // No sleep: the refusal has been processed (the error state is here), and a retry is scheduled in
    // that same step if at all, so its absence can be read now (the socket's one timer for retries).
    assert.equal(
      (live as unknown as { retryTimer: NodeJS.Timeout | undefined }).retryTimer,
      undefined,
      'no retries after a refused key',
    );
    assert.equal(cable.connections, before + 1, 'one connection, the refused one');
    assert.equal(live.state.status, 'error');
  });

  it('a key revoked while connected ends in the sign-in-again state', async () => {
    const bob = await tb.addUser('bob-socket@example.com');
    const live = open(bob.key);
    const w = watch(live);
    live.start();
    await w.until((s) => s.status === 'live');
    await tb.api('DELETE', `/api/v1/keys/${bob.keyId}`, tb.adminKey);
    const s = await w.until((x) => x.status === 'error');
    assert.equal(s.status === 'error' && s.needsSignIn, true);
    assert.match(s.status === 'error' ? s.message : '', /revoked/);
  });

  it('too many bad keys (4029) waits as long as the close notice says, not the short backoff', async () => {
    const throttled = await startBridge(upstream.url, { AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '1' });
    const live = new LiveSocket({
      url: throttled.url,
      key: 'aib_bad',
      backoff: { baseMs: 50, maxMs: 200, random: Math.random },
    });
    sockets.push(live);
    try {
      const w = watch(live);
      live.start();
      // The first bad key is refused (4001, final); the next start is throttled (4029).
      await w.until((s) => s.status === 'error');
      const at = Date.now();
      live.start();
      const s = await w.until((x) => x.status === 'reconnecting' && x.retryAt !== null);
      const waitMs = s.status === 'reconnecting' && s.retryAt !== null ? s.retryAt - at : 0;
      assert.match(s.status === 'reconnecting' ? s.lastError : '', /4029/);
      assert.ok(waitMs >= 1000, `waits the server's retryAfter (seconds), not 200 ms: ${waitMs} ms`);
    } finally {
      live.dispose();
      await throttled.close();
    }
  });
  it('a socket that opens but never hears a hello (network lost right after the upgrade) is dropped and retried', async () => {
    const silent = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: (p) => [...p][0] ?? false,
    });
    let upgrades = 0;
    silent.on('connection', () => upgrades++);
    await new Promise<void>((r) => silent.once('listening', () => r()));
    const live = new LiveSocket({
      url: `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`,
      key: alice.key,
      backoff: { baseMs: 50, maxMs: 200, random: Math.random },
      helloTimeoutMs: 300,
    });
    sockets.push(live);
    try {
      const w = watch(live);
      live.start();
      const s = await w.until((x) => x.status === 'reconnecting', 5000);
      assert.equal(s.status === 'reconnecting' && s.lastError, 'connection lost');
      await eventually(() => upgrades >= 2, { what: 'a second attempt' });
    } finally {
      live.dispose();
      for (const c of silent.clients) c.terminate();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
