import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import { heapWarnings, loadConfig } from '../../server/config';
import { ConnectionGuard } from '../../server/http/connection-guard';
import { jsonDepth, jsonShape } from '../../server/http/json-depth';
import { parseTrustedProxies, TrustedProxies } from '../../server/http/trusted-proxies';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { type LiveTestClient, liveClient } from '../helpers/live-client';
import { OpenAIMock } from '../helpers/openai-mock';
import { sessionCookie } from '../helpers/session';

/** A raw TCP client: what it received so far, and whether (and when) the bridge closed it. */
interface Raw {
  socket: Socket;
  text(): string;
  /** Resolves when the socket is closed, with the milliseconds since it was opened. */
  closed: Promise<number>;
}

function raw(baseUrl: string): Promise<Raw> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now() - started)));
    socket.once('connect', () =>
      resolve({ socket, text: () => Buffer.concat(chunks).toString('latin1'), closed }),
    );
    socket.once('error', reject);
  });
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms}ms`)), ms)),
  ]);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `r` has received `pattern`, or rejects after `ms`. */
async function received(r: Raw, pattern: RegExp, ms: number): Promise<string> {
  return eventually(() => (pattern.test(r.text()) ? r.text() : undefined), {
    timeoutMs: ms,
    intervalMs: 10,
    what: `${pattern} (got so far: ${r.text().slice(0, 2000)})`,
  });
}

/** The head of a Messages request as written on the wire, its body announced by length or chunked. */
function messagesHead(key: string, length: number | 'chunked', path = '/anthropic/v1/messages'): string {
  return (
    `POST ${path} HTTP/1.1\r\nHost: bridge\r\nx-api-key: ${key}\r\n` +
    `anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n` +
    (length === 'chunked' ? 'transfer-encoding: chunked\r\n\r\n' : `content-length: ${length}\r\n\r\n`)
  );
}

/** A whole Messages request as written on the wire. */
function messagesRequest(key: string, body: string): string {
  return messagesHead(key, Buffer.byteLength(body)) + body;
}

const MESSAGE = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    model: 'claude-sonnet-4-6',
    max_tokens: 5,
    messages: [{ role: 'user', content: 'hi' }],
    ...extra,
  });

describe('connections and request reading: no member can stall or exhaust the bridge (issue 22)', function () {
  this.timeout(30_000);
  let mock: AnthropicMock;
  let openai: OpenAIMock;

  before(async () => {
    mock = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
  });
  after(async () => {
    await openai.stop();
    await mock.stop();
  });

  describe('live-event sockets per user', () => {
    let tb: TestBridge;
    const clients: LiveTestClient[] = [];
    before(async () => {
      tb = await startBridge(mock.url);
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await tb.close();
    });

    it('opens 32 sockets for one user, closes the 33rd with 4029; another user still connects', async () => {
      const hog = await tb.addUser('socket-hog@example.com');
      const other = await tb.addUser('socket-other@example.com');
      // Two keys of one user: 16 sockets each (the per-key cap), 32 in all (the per-user cap).
      const second = await tb.api<{ key: string }>(
        'POST',
        `/api/v1/users/${encodeURIComponent('socket-hog@example.com')}/keys`,
        tb.adminKey,
        {},
      );
      for (let i = 0; i < 32; i++)
        clients.push(liveClient(tb.url, { key: i < 16 ? hog.key : second.body.key }));
      await Promise.all(clients.map((c) => c.next('hello')));
      const extra = liveClient(tb.url, { key: hog.key });
      clients.push(extra);
      const close = await within(extra.closed, 5000, 'the 33rd socket closed');
      assert.equal(close.code, 4029);
      assert.match(close.reason, /Too many live-event sockets for this user \(32 open, at most 32\)/);
      assert.equal(extra.events.length, 0, 'the refused socket got no hello');

      const ok = liveClient(tb.url, { key: other.key });
      clients.push(ok);
      assert.equal((await ok.next('hello')).user.email, 'socket-other@example.com');

      // A socket closed frees its place.
      await clients[0]!.close();
      const again = liveClient(tb.url, { key: hog.key });
      clients.push(again);
      await again.next('hello');
    });

    it('one key holds at most 16 sockets (AIBRIDGE_LIVE_SOCKETS_PER_KEY); the 17th is closed with 4029', async () => {
      const u = await tb.addUser('socket-key@example.com');
      const mine: typeof clients = [];
      for (let i = 0; i < 16; i++) mine.push(liveClient(tb.url, { key: u.key }));
      clients.push(...mine);
      await Promise.all(mine.map((c) => c.next('hello')));
      const extra = liveClient(tb.url, { key: u.key });
      clients.push(extra);
      const close = await within(extra.closed, 5000, 'the 17th socket closed');
      assert.equal(close.code, 4029);
      assert.match(close.reason, /for this key \(16 open, at most 16\)/);
    });
  });

  describe('request deadlines (AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS, AIBRIDGE_REQUEST_BODY_TIMEOUT_MS)', () => {
    let tb: TestBridge;
    let key: string;
    before(async () => {
      tb = await startBridge(mock.url, {
        AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS: '300',
        AIBRIDGE_REQUEST_BODY_TIMEOUT_MS: '300',
      });
      key = (await tb.addUser('deadlines@example.com')).key;
    });
    after(async () => tb.close());

    it('closes a connection that never sends a byte (408), and does not wait for one at shutdown', async () => {
      const silent = await raw(tb.url);
      await within(silent.closed, 3000, 'the silent socket closed');
      assert.match(silent.text(), /^HTTP\/1\.1 408 /);
      // One open when the bridge stops: node's deadline checks stop with the server, and the close
      // waited the whole grace period for it.
      const other = await startBridge(mock.url, { AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS: '60000' });
      const held = await raw(other.url);
      // And one whose request has begun: it is answered, not cut off.
      const begun = await raw(other.url);
      begun.socket.write('GET /healthz HTTP/1.1\r\n');
      await sleep(100);
      const started = Date.now();
      const closing = other.close();
      await sleep(100);
      begun.socket.write('Host: bridge\r\n\r\n');
      await closing;
      assert.ok(Date.now() - started < 5_000, `close took ${Date.now() - started}ms`);
      await within(held.closed, 1000, 'the silent socket closed at shutdown');
      await received(begun, /^HTTP\/1\.1 503 [\s\S]*shutting_down/, 2000);
      // Headers begun and never finished: ended by the headers deadline (300 ms here), not held
      // until the grace period (node's own checks stop with the server).
      const third = await startBridge(mock.url, { AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS: '300' });
      const stalled = await raw(third.url);
      stalled.socket.write('GET /healthz HTTP/1.1\r\nHo');
      await sleep(100);
      const t0 = Date.now();
      await within(third.close(), 5000, 'the close with a stalled request head');
      assert.ok(Date.now() - t0 < 3000, `close took ${Date.now() - t0}ms`);
    });

    it('closes a slowloris connection whose headers never end, with 408', async () => {
      const r = await raw(tb.url);
      r.socket.write('POST /anthropic/v1/messages HTTP/1.1\r\nHost: bridge\r\n');
      const drip = setInterval(() => r.socket.writable && r.socket.write('x-drip: 1\r\n'), 50);
      try {
        const ms = await within(r.closed, 3000, 'the slowloris socket closed');
        assert.ok(ms >= 250, `closed after ${ms}ms, not before the deadline`);
        const text = r.text();
        assert.match(text, /^HTTP\/1\.1 408 /);
        const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
        assert.equal(body.error.code, 'request_timeout');
      } finally {
        clearInterval(drip);
      }
    });

    it('answers a body that trickles past the deadline with 408 in the provider shape and closes the connection', async () => {
      const r = await raw(tb.url);
      r.socket.write(
        `POST /anthropic/v1/messages HTTP/1.1\r\nHost: bridge\r\nx-api-key: ${key}\r\n` +
          'content-type: application/json\r\ncontent-length: 1000\r\n\r\n{"model":',
      );
      const drip = setInterval(() => r.socket.writable && r.socket.write(' '), 50);
      try {
        const ms = await within(r.closed, 3000, 'the slow-body socket closed');
        assert.ok(ms >= 250, `closed after ${ms}ms, not before the deadline`);
        const text = r.text();
        assert.match(text, /^HTTP\/1\.1 408 /);
        assert.match(text, /connection: close/i);
        const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as {
          type: string;
          error: { type: string; message: string };
        };
        assert.equal(body.type, 'error');
        assert.match(body.error.message, /did not arrive within 0\.3s/);
      } finally {
        clearInterval(drip);
      }
    });

    it('answers a slow body on /api/v1 with 408 request_timeout in the bridge shape', async () => {
      const r = await raw(tb.url);
      r.socket.write(
        `POST /api/v1/users HTTP/1.1\r\nHost: bridge\r\nauthorization: Bearer ${tb.adminKey}\r\n` +
          'content-type: application/json\r\ncontent-length: 100\r\n\r\n{',
      );
      await within(r.closed, 3000, 'the slow-body socket closed');
      const text = r.text();
      assert.match(text, /^HTTP\/1\.1 408 /);
      const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
      assert.equal(body.error.code, 'request_timeout');
    });

    it('still times a body trickled behind an answer sent before it (a 401 or 403 from the headers alone)', async () => {
      for (const auth of ['', `authorization: Bearer ${key}\r\n`]) {
        const r = await raw(tb.url);
        r.socket.write(
          `POST /api/v1/users HTTP/1.1\r\nHost: bridge\r\n${auth}` +
            'content-type: application/json\r\ncontent-length: 100000\r\n\r\n{',
        );
        const drip = setInterval(() => r.socket.writable && r.socket.write(' '), 50);
        try {
          await received(r, auth ? /^HTTP\/1\.1 403 / : /^HTTP\/1\.1 401 /, 1000);
          const ms = await within(r.closed, 3000, 'the socket trickling a refused body closed');
          assert.ok(ms >= 250, `closed after ${ms}ms, not before the deadline`);
        } finally {
          clearInterval(drip);
        }
      }
    });

    it('does not cut a streamed response that lasts many times both deadlines', async () => {
      mock.next({ kind: 'drip', count: 12, delayMs: 150 });
      const client = new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
      const started = Date.now();
      const stream = client.messages.stream({
        model: 'claude-sonnet-4-6',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'a long answer' }],
      });
      let deltas = 0;
      stream.on('text', () => deltas++);
      const final = await stream.finalMessage();
      assert.ok(Date.now() - started >= 1500, 'the stream lasted over five times the deadlines');
      assert.equal(deltas, 12);
      assert.equal(final.stop_reason, 'end_turn');
    });

    it('starts with the longest allowed headers deadline (node refuses one above its own request timeout)', async () => {
      const long = await startBridge(mock.url, { AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS: '600000' });
      await long.close();
    });

    it('leaves an idle keep-alive connection between requests to the keep-alive timeout, not the headers deadline', async () => {
      const r = await raw(tb.url);
      r.socket.write('GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n');
      await received(r, /"status":"ok"/, 2000);
      // Real time is the point: node's own headers timer (not the app's clock) must let the idle connection be.
      await sleep(800);
      assert.equal(r.socket.destroyed, false, 'the idle connection is still open');
      // And it still serves: a second request on it is answered.
      r.socket.write('GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n');
      await eventually(() => (r.text().match(/"status":"ok"/g) ?? []).length === 2, {
        timeoutMs: 2000,
        what: 'the second answer on the kept-alive connection',
      });
      r.socket.destroy();
    });
  });

  describe('connections per client address (AIBRIDGE_CONNECTIONS_PER_ADDRESS)', () => {
    let tb: TestBridge;
    before(async () => {
      tb = await startBridge(mock.url, { AIBRIDGE_CONNECTIONS_PER_ADDRESS: '8' });
    });
    after(async () => tb.close());

    it('closes connections beyond the cap at once, before reading them; a freed place serves again', async () => {
      const held = await Promise.all(Array.from({ length: 8 }, () => raw(tb.url)));
      const over = await raw(tb.url);
      over.socket.write('GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n');
      await within(over.closed, 2000, 'the 9th connection closed');
      assert.equal(over.text(), '', 'nothing was answered on the refused connection');
      assert.ok(
        held.every((h) => !h.socket.destroyed),
        'the connections within the cap stay open',
      );

      held[0]!.socket.destroy();
      await held[0]!.closed;
      // The server frees the place once it has seen the close, soon after: try until a connection is served.
      const answer = await eventually(
        async () => {
          const next = await raw(tb.url);
          next.socket.write('GET /healthz HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n');
          await within(next.closed, 2000, 'the healthz answer');
          return next.text();
        },
        { timeoutMs: 2000, intervalMs: 10, what: 'a freed place to serve again' },
      );
      assert.match(answer, /^HTTP\/1\.1 200 /);
      for (const h of held) h.socket.destroy();
    });
  });

  describe('HTTP pipelining', () => {
    let tb: TestBridge;
    let key: string;
    before(async () => {
      tb = await startBridge(mock.url);
      key = (await tb.addUser('piper@example.com')).key;
    });
    after(async () => tb.close());
    const post = (body: string): string => messagesRequest(key, body);

    it('refuses requests sent ahead of an answer: one upstream call per connection, cancelled when the client leaves', async () => {
      mock.clear();
      mock.next({ kind: 'hang' });
      const before = mock.messageRequests().length;
      const r = await raw(tb.url);
      const request = post(MESSAGE());
      // Fifty requests written back to back on one connection, the first of which hangs upstream;
      // the second carries a 1 MiB body (left unread, it would stop node reading the connection,
      // and the first would not hear its client leave).
      const big = post(MESSAGE({ metadata: { user_id: 'x'.repeat(1024 * 1024) } }));
      r.socket.write(request + big + request.repeat(48));
      await eventually(() => (mock.messageRequests().length > before ? true : undefined), {
        timeoutMs: 3000,
        what: 'the first request upstream',
      });
      await sleep(300);
      assert.equal(mock.messageRequests().length - before, 1, 'only the first request went upstream');
      const first = mock.messageRequests().at(-1)!;
      r.socket.destroy();
      await eventually(() => (first.aborted ? true : undefined), {
        timeoutMs: 3000,
        what: 'the upstream call cancelled when the client left',
      });
      assert.equal(mock.messageRequests().length - before, 1);
    });

    it('answers the request sent ahead with 400 in the provider shape after the first answer, then closes', async () => {
      mock.clear();
      const r = await raw(tb.url);
      const request = post(MESSAGE());
      r.socket.write(request + request);
      await within(r.closed, 5000, 'the connection closed after the refusal');
      const text = r.text();
      const answers = text.split(/(?=HTTP\/1\.1 )/);
      assert.match(answers[0]!, /^HTTP\/1\.1 200 /, text.slice(0, 300));
      assert.match(answers[1]!, /^HTTP\/1\.1 400 /);
      assert.match(answers[1]!, /"type":"invalid_request_error"/);
      assert.match(answers[1]!, /pipelining is not supported/);
      // A client that waits for each answer keeps its connection (keep-alive as usual).
      const ok = await raw(tb.url);
      ok.socket.write(request);
      await received(ok, /^HTTP\/1\.1 200 [\s\S]*"usage"/, 5000);
      ok.socket.write(request);
      await received(ok, /^HTTP\/1\.1 200 [\s\S]*"usage"[\s\S]*HTTP\/1\.1 200 [\s\S]*"usage"/, 5000);
      ok.socket.destroy();
    });
  });

  describe('a request behind an answer that closed the connection', () => {
    let tb: TestBridge;
    let key: string;
    before(async () => {
      tb = await startBridge(mock.url);
      key = (await tb.addUser('behind@example.com')).key;
    });
    after(async () => tb.close());

    it('is not served, sent upstream or recorded, on the provider lane and on fastify’s routes', async () => {
      const bad = messagesRequest(`aib_${'A'.repeat(43)}`, MESSAGE());
      for (const second of [
        messagesRequest(key, MESSAGE()),
        `GET /api/v1/me HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\n\r\n`,
      ]) {
        mock.clear();
        const sent = mock.messageRequests().length;
        const records = (await tb.interceptions(0)).length;
        const r = await raw(tb.url);
        r.socket.write(bad + second);
        await within(r.closed, 5000, 'the connection closed after the refusal');
        const answers = r.text().split(/(?=HTTP\/1\.1 )/);
        assert.equal(answers.length, 1, r.text().slice(0, 400));
        assert.match(answers[0]!, /^HTTP\/1\.1 401 [\s\S]*connection: close/i);
        await sleep(300);
        assert.equal(mock.messageRequests().length, sent, 'nothing went upstream');
        assert.equal((await tb.interceptions(0)).length, records, 'nothing was recorded');
      }
    });
  });

  describe('AIBRIDGE_HOST=localhost: every address it names meets the same front door', () => {
    let tb: TestBridge;
    let key: string;
    /** The second address `localhost` names here (::1 on most machines; 127.0.0.2 is loopback too). */
    let other: string;
    const lookupLocalhost = async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '127.0.0.2', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ];
    before(async () => {
      tb = await startBridge(
        mock.url,
        { AIBRIDGE_CONNECTIONS_PER_ADDRESS: '4' },
        undefined,
        { lookupLocalhost },
        'localhost',
      );
      key = (await tb.addUser('local@example.com')).key;
      other = tb.url.replace('127.0.0.1', '127.0.0.2');
    });
    after(async () => tb.close());

    it('a metered call to the other address is served, through the provider lane', async () => {
      mock.clear();
      const taken = tb.bridge.lane.taken;
      const client = new Anthropic({ apiKey: key, baseURL: `${other}/anthropic`, maxRetries: 0 });
      const msg = await client.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'hi' }],
      });
      assert.ok(msg.usage.output_tokens > 0);
      assert.equal(tb.bridge.lane.taken, taken + 1);
    });

    it('a request pipelined to the other address is refused, as on the first', async () => {
      mock.clear();
      const r = await raw(other);
      const request = messagesRequest(key, MESSAGE());
      r.socket.write(request + request);
      await within(r.closed, 5000, 'the connection closed after the refusal');
      const answers = r.text().split(/(?=HTTP\/1\.1 )/);
      assert.match(answers[0]!, /^HTTP\/1\.1 200 /);
      assert.match(answers[1]!, /^HTTP\/1\.1 400 [\s\S]*pipelining is not supported/);
    });

    it("one client's connections to either address count against one cap", async () => {
      const held = await Promise.all(Array.from({ length: 4 }, () => raw(tb.url)));
      const over = await raw(other);
      over.socket.write('GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n');
      await within(over.closed, 2000, 'the 5th connection closed');
      assert.equal(over.text(), '');
      for (const h of held) h.socket.destroy();
      await Promise.all(held.map((h) => h.closed));
    });

    it('stops accepting on the other address when the bridge closes, and lets a stream open there finish first', async () => {
      mock.clear();
      mock.next({ kind: 'drip', count: 20, delayMs: 50 });
      const r = await raw(other);
      r.socket.write(messagesRequest(key, MESSAGE({ stream: true })));
      await received(r, /^HTTP\/1\.1 200 /, 5000);
      const closing = tb.close();
      await sleep(100);
      await assert.rejects(raw(other), /ECONNREFUSED/);
      await closing;
      assert.match(r.text(), /event: message_stop/, 'the stream ended whole before the bridge closed');
      r.socket.destroy();
    });
  });

  describe('a client that stops reading (AIBRIDGE_IDLE_TIMEOUT_MS)', () => {
    let tb: TestBridge;
    let key: string;
    before(async () => {
      tb = await startBridge(mock.url, { AIBRIDGE_IDLE_TIMEOUT_MS: '1000' });
      key = (await tb.addUser('stalled@example.com')).key;
    });
    after(async () => tb.close());

    it("is cut once its answer's end cannot be delivered within the idle timeout", async () => {
      mock.clear();
      // Far more than the sockets' buffers hold, as fast as the mock can write it.
      mock.next({ kind: 'drip', count: 150_000, delayMs: 0 });
      const r = await raw(tb.url);
      r.socket.write(messagesRequest(key, MESSAGE({ stream: true })));
      await received(r, /^HTTP\/1\.1 200 /, 5000);
      // The client reads no more, and never hangs up.
      r.socket.pause();
      // The upstream is cut after an idle timeout with nothing read, then the answer's end gets
      // another to get through before the bridge cuts the connection. (A paused socket hears of it
      // only once it reads what is buffered; a kept-alive one the bridge had not cut would never
      // close.)
      await sleep(3500);
      r.socket.resume();
      await within(r.closed, 10_000, 'the stalled connection cut');
    });

    it("is the client's doing, not the provider's: stalled streams are recorded client_aborted and open no circuit breaker", async () => {
      mock.clear();
      // One more than the breaker's threshold (5): each would have counted as a provider timeout.
      const stalled: Raw[] = [];
      const ids: string[] = [];
      // Far more than the sockets' buffers hold, in two events the mock writes at once: 150,000
      // small ones kept the mock (in this process) busy long enough, on a loaded machine, for the
      // streams already stalled to see a provider silent for the idle timeout.
      const text = 'x'.repeat(16 * 1024 * 1024);
      for (let i = 0; i < 6; i++) {
        mock.next({ kind: 'text', text });
        const r = await raw(tb.url);
        r.socket.write(messagesRequest(key, MESSAGE({ stream: true })));
        const head = await received(
          r,
          /^HTTP\/1\.1 200 [\s\S]*x-aibridge-interception-id: (int_\S+)\r\n/i,
          5000,
        );
        ids.push(/x-aibridge-interception-id: (int_\S+)\r\n/i.exec(head)![1]!);
        r.socket.pause();
        stalled.push(r);
      }
      await sleep(2500);
      const records = await eventually(
        async () => {
          const all = (await tb.interceptions(100)).filter((rec) => ids.includes(rec.id));
          return all.length === ids.length ? all : undefined;
        },
        { what: 'the stalled streams recorded', timeoutMs: 10_000 },
      );
      for (const rec of records) assert.equal(rec.status, 'client_aborted', JSON.stringify(rec.error));
      const other = await tb.addUser('bystander@example.com');
      const res = await askMessages(tb.url, other.key);
      assert.equal(res.status, 200, 'another user is still served');
      for (const r of stalled) {
        r.socket.resume();
        r.socket.destroy();
      }
    });
  });

  describe('request-body bytes in flight (AIBRIDGE_BODY_BYTES_IN_FLIGHT)', () => {
    let tb: TestBridge;
    const keys: string[] = [];
    const MiB = 1024 * 1024;
    before(async () => {
      tb = await startBridge(mock.url, {
        AIBRIDGE_BODY_BYTES_IN_FLIGHT: String(MiB),
        AIBRIDGE_BODY_LIMIT: String(MiB / 2),
      });
      for (let i = 0; i < 6; i++) keys.push((await tb.addUser(`bodies${i}@example.com`)).key);
    });
    after(async () => tb.close());

    it('defaults to what V8’s heap can hold (a third of its limit, 512 MiB at most), and warns past it', () => {
      const flags = { 'data-dir': '/tmp/unused' };
      const inFlight = (env: Record<string, string>, heapMiB: number) =>
        loadConfig(flags, env, heapMiB * MiB).limits.bodyBytesInFlight;
      assert.equal(inFlight({}, 4096), 512 * MiB, 'a large heap keeps the default');
      assert.equal(inFlight({}, 256), Math.floor((256 * MiB) / 3), 'a small one holds a third of it');
      assert.equal(inFlight({}, 64), 32 * MiB, 'never under the body limit');
      assert.equal(inFlight({ AIBRIDGE_BODY_BYTES_IN_FLIGHT: String(400 * MiB) }, 256), 400 * MiB, 'as set');
      const set = { AIBRIDGE_BODY_BYTES_IN_FLIGHT: String(400 * MiB) };
      const warned = heapWarnings(loadConfig(flags, set, 256 * MiB), set, 256 * MiB);
      assert.equal(warned.length, 1);
      assert.match(warned[0]!, /400 MiB\).*heap limit \(256 MiB\).*lower it to 85 MiB/);
      assert.deepEqual(heapWarnings(loadConfig(flags, {}, 4096 * MiB), {}, 4096 * MiB), []);
      const unbounded = { AIBRIDGE_BODY_BYTES_IN_FLIGHT: '0' };
      assert.equal(heapWarnings(loadConfig(flags, unbounded, 1024 * MiB), unbounded, 1024 * MiB).length, 1);
      // Not set, and the body limit is what raised the default past the heap: that is what to lower.
      const big = { ...flags, 'body-limit': String(200 * MiB) };
      const [bodyLimit] = heapWarnings(loadConfig(big, {}, 256 * MiB), {}, 256 * MiB);
      assert.match(bodyLimit!, /the body limit \(--body-limit, AIBRIDGE_BODY_LIMIT: 200 MiB\)/);
      assert.doesNotMatch(bodyLimit!, /AIBRIDGE_BODY_BYTES_IN_FLIGHT/);
    });

    /** A body of `length` announced and half sent, then held. */
    const hold = async (key: string, length: number): Promise<Raw> => {
      const r = await raw(tb.url);
      r.socket.write(messagesHead(key, length) + '{"x":"'.padEnd(length / 2, 'a'));
      return r;
    };
    const refused = async (r: Raw, whose: RegExp): Promise<void> => {
      const text = await received(r, /^HTTP\/1\.1 503 [\s\S]*\}$/, 5000);
      assert.match(text, /"type":"api_error"/);
      assert.match(text, whose);
      assert.match(text, /x-aibridge-error-code: server_busy/i);
      assert.match(text, /retry-after: 1/i);
      await within(r.closed, 2000, 'the refused connection closed');
    };

    it("refuses a body past one user's share or the replica's with 503 server_busy at once, in the provider shape; freed shares serve again", async () => {
      // One user may hold a quarter of the 1 MiB: a second 200 KB body of theirs is over it.
      const held = [await hold(keys[0]!, 200_000)];
      await sleep(100);
      const second = await raw(tb.url);
      second.socket.write(messagesHead(keys[0]!, 200_000));
      await refused(second, /Your requests in flight/);
      // Four more users hold 200 KB each: 1,000,000 bytes of the replica's 1,048,576.
      for (const k of keys.slice(1, 5)) held.push(await hold(k, 200_000));
      await sleep(200);
      // The lane (a plain path) and fastify's routes (a path with an escape) both count.
      for (const path of ['/anthropic/v1/messages', '/anthropic/v1/%6Dessages']) {
        const over = await raw(tb.url);
        over.socket.write(messagesHead(keys[5]!, 200_000, path));
        await refused(over, /AIBRIDGE_BODY_BYTES_IN_FLIGHT/);
      }
      // The MCP gateway's and the API's bodies count in the same budget, each refused in its shape.
      const heads = [
        `POST /mcp HTTP/1.1\r\nHost: bridge\r\nauthorization: Bearer ${keys[5]!}\r\n` +
          'accept: application/json, text/event-stream\r\ncontent-type: application/json\r\ncontent-length: 200000\r\n\r\n',
        `POST /api/v1/auth/device/renew HTTP/1.1\r\nHost: bridge\r\nauthorization: Bearer ${keys[5]!}\r\n` +
          'content-type: application/json\r\ncontent-length: 200000\r\n\r\n',
      ];
      for (const [i, head] of heads.entries()) {
        const over = await raw(tb.url);
        over.socket.write(head);
        const text = await received(over, /^HTTP\/1\.1 503 [\s\S]*\}$/, 5000);
        assert.match(text, /x-aibridge-error-code: server_busy/i);
        assert.match(text, i === 0 ? /"jsonrpc":"2\.0"/ : /"code":"server_busy"/);
        await within(over.closed, 2000, 'the refused connection closed');
      }
      // A body with no declared length is counted as it comes.
      const chunked = await raw(tb.url);
      chunked.socket.write(`${messagesHead(keys[5]!, 'chunked')}30000\r\n${'a'.repeat(0x30000)}\r\n`);
      await received(chunked, /^HTTP\/1\.1 503 /, 5000);
      chunked.socket.destroy();
      // A small request still fits beside the held ones; once they go, a larger one does too.
      const send = (bytes: number): Promise<Response> =>
        fetch(`${tb.url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': keys[5]!,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
          body: MESSAGE(bytes > 0 ? { metadata: { user_id: 'x'.repeat(bytes) } } : {}),
        });
      assert.equal((await send(0)).status, 200);
      for (const h of held) h.socket.destroy();
      const big = await eventually(
        async () => {
          const r = await send(240_000);
          return r.status === 503 ? undefined : r;
        },
        { timeoutMs: 3000, intervalMs: 50, what: 'the freed share' },
      );
      assert.equal(big.status, 200, await big.text());
    });

    it('keyless bodies share a sixteenth of the budget: silent sockets from many addresses refuse other keyless bodies, never a member’s', async () => {
      const from = (localAddress: string): Promise<Raw> =>
        new Promise((resolve, reject) => {
          const { port } = new URL(tb.url);
          const socket = connect({ port: Number(port), host: '127.0.0.1', localAddress });
          const chunks: Buffer[] = [];
          socket.on('data', (c: Buffer) => chunks.push(c));
          socket.on('error', () => undefined);
          const closed = new Promise<number>((r) => socket.once('close', () => r(0)));
          socket.once('connect', () =>
            resolve({ socket, text: () => Buffer.concat(chunks).toString('latin1'), closed }),
          );
          socket.once('error', reject);
        });
      // OAuth client registration: public, JSON, 16 KiB at most. Each announces 16,000 bytes and
      // sends one: four addresses take 64,000 of the keyless 65,536 (1 MiB / 16).
      const register = (length: number): string =>
        'POST /oauth/register HTTP/1.1\r\nHost: bridge\r\ncontent-type: application/json\r\n' +
        `content-length: ${length}\r\n\r\n{`;
      const held: Raw[] = [];
      for (const a of ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5']) {
        const r = await from(a);
        r.socket.write(register(16_000));
        held.push(r);
      }
      await sleep(200);
      for (const r of held) assert.doesNotMatch(r.text(), /HTTP\/1\.1/, 'held, not answered');
      const fifth = await from('127.0.0.6');
      fifth.socket.write(register(16_000));
      const refused = await received(fifth, /^HTTP\/1\.1 503 /, 5000);
      assert.match(refused, /Requests without a key/);
      // A member's body is not refused for them: 200 KB of the rest.
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': keys[0]!,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: MESSAGE({ metadata: { user_id: 'x'.repeat(200_000) } }),
      });
      assert.equal(res.status, 200, (await res.text()).slice(0, 200));
      for (const r of [...held, fifth]) r.socket.destroy();
    });

    it('public routes read no more than they take: device login refuses a JSON body over 4 KiB; an unknown path answers 404 without reading its body', async () => {
      const device = await fetch(`${tb.url}/api/v1/auth/device/code`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ device_name: 'x'.repeat(5000) }),
      });
      assert.equal(device.status, 413);
      // Announces 500 KB and sends none of it: answered at once, and the connection closed.
      const r = await raw(tb.url);
      r.socket.write(
        'POST /no/such/route HTTP/1.1\r\nHost: bridge\r\ncontent-type: application/json\r\ncontent-length: 500000\r\n\r\n',
      );
      const text = await received(r, /^HTTP\/1\.1 404 [\s\S]*\}$/, 2000);
      assert.match(text, /connection: close/i);
      assert.match(text, /"code":"not_found"/);
      await within(r.closed, 2000, 'the connection closed with its body unread');
    });
  });

  describe('provider routes authenticate before reading the body', () => {
    let tb: TestBridge;
    before(async () => {
      tb = await startBridge(mock.url);
    });
    after(async () => tb.close());

    it('answers 16 unauthenticated 31 MB bodies with 401 while their bodies are still unsent, without buffering them', async () => {
      const size = 31 * 1024 * 1024;
      const before = mock.requests.length;
      const rssBefore = process.memoryUsage().rss;
      const clients = await Promise.all(
        Array.from({ length: 16 }, async () => {
          const r = await raw(tb.url);
          r.socket.write(
            'POST /anthropic/v1/messages HTTP/1.1\r\nHost: bridge\r\nx-api-key: sk-ant-not-a-bridge-key\r\n' +
              `anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: ${size}\r\n\r\n`,
          );
          r.socket.write(Buffer.alloc(64 * 1024, 0x20));
          return r;
        }),
      );
      for (const r of clients) {
        const text = await received(r, /\r\n\r\n\{.*\}$/s, 3000);
        assert.match(text, /^HTTP\/1\.1 401 /);
        assert.match(text, /connection: close/i);
        assert.match(text, /"authentication_error"/);
        // The bridge hangs up rather than reading 31 MB only to drop it.
        await within(r.closed, 3000, 'the refused connection closed');
      }
      const grownMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
      assert.ok(grownMb < 64, `RSS grew by ${grownMb.toFixed(1)} MB`);
      assert.equal(mock.requests.length, before, 'upstream not contacted');
    });

    it('still answers the unauthenticated HEAD probe, and serves a valid key', async () => {
      assert.equal((await fetch(`${tb.url}/anthropic`, { method: 'HEAD' })).status, 200);
      assert.equal((await fetch(`${tb.url}/openai/v1/`, { method: 'HEAD' })).status, 200);
      const dev = await tb.addUser('body-after-auth@example.com');
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
        },
        body: MESSAGE(),
      });
      assert.equal(res.status, 200);
      await res.text();
    });
  });

  describe('JSON nesting (AIBRIDGE_MAX_JSON_DEPTH, 128 by default)', () => {
    let tb: TestBridge;
    let key: string;
    before(async () => {
      tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
      key = (await tb.addUser('deep-json@example.com')).key;
    });
    after(async () => tb.close());

    const nested = (levels: number): string => `${'['.repeat(levels)}${']'.repeat(levels)}`;
    /** A request body with `levels` nested arrays under a field the provider would pass through. */
    const body = (api: string, stream: boolean, levels: number): string => {
      const deep = `{"x":${nested(levels - 2)}}`;
      const base =
        api === 'messages'
          ? MESSAGE({ stream }).slice(0, -1)
          : api === 'chat'
            ? JSON.stringify({ model: 'gpt-5', stream, messages: [{ role: 'user', content: 'hi' }] }).slice(
                0,
                -1,
              )
            : JSON.stringify({ model: 'gpt-5', stream, input: 'hi' }).slice(0, -1);
      return `${base},"metadata":${deep}}`;
    };
    const routes = {
      messages: '/anthropic/v1/messages',
      chat: '/openai/v1/chat/completions',
      responses: '/openai/v1/responses',
    } as const;

    /** Sends `text` to the API's route; asserts its 400 `invalid_json` in the API's shape, the provider not contacted. */
    const refusedAsJson = async (api: keyof typeof routes, text: string, message: RegExp): Promise<void> => {
      const upstream = api === 'messages' ? mock : openai;
      const before = upstream.requests.length;
      const res = await fetch(tb.url + routes[api], {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
        },
        body: text,
      });
      const answer = await res.text();
      assert.equal(res.status, 400, `${api}: ${answer.slice(0, 300)}`);
      const json = JSON.parse(answer) as {
        type?: string;
        error: { type: string; code?: string; message: string };
      };
      if (api === 'messages') assert.equal(json.type, 'error');
      else assert.equal(json.error.code, 'invalid_json');
      assert.equal(json.error.type, 'invalid_request_error');
      assert.match(json.error.message, message);
      assert.equal(res.headers.get('x-aibridge-error-code'), 'invalid_json');
      assert.equal(upstream.requests.length, before, api);
    };

    for (const api of ['messages', 'chat', 'responses'] as const) {
      for (const stream of [false, true]) {
        it(`${api}${stream ? ' (streamed)' : ''}: 100,000 levels get 400 in the API's shape; the provider is not contacted`, async () => {
          await refusedAsJson(api, body(api, stream, 100_000), /deeper than 128 levels/);
        });
      }
    }

    it('a key named twice at the top level (two models, two conversations) gets 400 in each API shape; the provider is not contacted', async () => {
      const dup: Record<keyof typeof routes, string> = {
        // The bridge's parser keeps the last value; a provider's might keep the first.
        messages: `{"model":"claude-opus-4-5",${MESSAGE().slice(1)}`,
        chat: '{"model":"gpt-5","messages":[{"role":"user","content":"hi"}],"mod\\u0065l":"gpt-4o-mini"}',
        responses: '{"model":"gpt-5","conversation":"conv_theirs","input":"hi","conversation":null}',
      };
      for (const api of ['messages', 'chat', 'responses'] as const)
        await refusedAsJson(api, dup[api], /names "(model|conversation)" more than once at its top level/);
      // The same key inside a message, or a key's name inside a string, is no duplicate.
      const ok = await fetch(tb.url + routes.messages, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: MESSAGE({ metadata: { note: '","model":"x' } }),
      });
      assert.equal(ok.status, 200, await ok.text());
    });

    it('passes a body nested exactly 128 levels deep', async () => {
      const res = await fetch(tb.url + routes.messages, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: body('messages', false, 128),
      });
      assert.equal(res.status, 200, await res.text());
    });

    it('brackets inside strings do not count', async () => {
      const res = await fetch(tb.url + routes.messages, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: MESSAGE({ metadata: { note: `"[{\\"${'['.repeat(1000)}` } }),
      });
      assert.equal(res.status, 200, await res.text());
    });

    it('a body of more than 250,000 objects and arrays (AIBRIDGE_MAX_JSON_CONTAINERS) gets 400 before it is parsed, in each API shape; 250,000 pass', async () => {
      // An empty item is 3 bytes of JSON and ~60 of heap: 11 million of them fit in the 32 MiB limit.
      const items = (n: number): string => `[${'{},'.repeat(n - 1)}{}]`;
      for (const api of ['messages', 'chat', 'responses'] as const) {
        const base = (
          api === 'messages'
            ? MESSAGE()
            : api === 'chat'
              ? JSON.stringify({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] })
              : JSON.stringify({ model: 'gpt-5', input: 'hi' })
        ).slice(0, -1);
        await refusedAsJson(
          api,
          `${base},"padding":${items(2_000_000)}}`,
          /more than 250000 objects and arrays \(AIBRIDGE_MAX_JSON_CONTAINERS\)/,
        );
      }
      const ok = await fetch(tb.url + routes.messages, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        // The body, its messages array and message are three more, the padding array one.
        body: `${MESSAGE().slice(0, -1)},"padding":${items(250_000 - 4)}}`,
      });
      assert.equal(ok.status, 200, (await ok.text()).slice(0, 300));
    });

    it('a body of more than 500,000 object keys or 1,000,000 values gets 400 before it is parsed; long strings do not count', async () => {
      // One object of short keys: three containers, and two seconds of JSON.parse at two million.
      const base = MESSAGE().slice(0, -1);
      const keyBomb = `${base},"metadata":{${Array.from({ length: 500_001 }, (_, i) => `"k${i}":0`).join(',')}}}`;
      await refusedAsJson('messages', keyBomb, /more than 500000 object keys/);
      await refusedAsJson(
        'messages',
        `${base},"padding":[${'0,'.repeat(1_000_000)}0]}`,
        /more than 1000000 values/,
      );
      // A 20 MB prompt is one value.
      const long = await fetch(tb.url + routes.messages, {
        method: 'POST',
        headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: MESSAGE({ metadata: { user_id: `${'a:b,'.repeat(5_000_000)}` } }),
      });
      assert.equal(long.status, 200, (await long.text()).slice(0, 300));
    });

    it('/api/v1 JSON bodies nested 100,000 levels deep get 400, not 500 (their schemas refuse them)', async () => {
      const res = await fetch(`${tb.url}/api/v1/users`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
        body: `{"email":"deep@example.com","name":${nested(100_000)}}`,
      });
      const json = (await res.json()) as { error: { code: string } };
      assert.equal(res.status, 400);
      assert.equal(json.error.code, 'invalid_request');
    });
  });

  describe('behind a reverse proxy (AIBRIDGE_TRUSTED_PROXIES) and the auth throttle', () => {
    async function attempt(tb: TestBridge, key: string, forwardedFor?: string): Promise<number> {
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': key,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
          ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
        },
        body: MESSAGE(),
      });
      await res.text();
      return res.status;
    }
    const BAD = `aib_${'B'.repeat(43)}`;

    it('from a trusted proxy, one client’s bad keys throttle that client only; its valid key is still served', async () => {
      const tb = await startBridge(mock.url, {
        AIBRIDGE_TRUSTED_PROXIES: '127.0.0.1, ::1',
        AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '3',
      });
      try {
        const dev = await tb.addUser('behind-proxy@example.com');
        for (let i = 0; i < 3; i++) assert.equal(await attempt(tb, BAD, '203.0.113.7'), 401);
        assert.equal(await attempt(tb, BAD, '203.0.113.7'), 429, 'the guessing client is throttled');
        assert.equal(await attempt(tb, BAD, '198.51.100.2, 203.0.113.9'), 401, 'another client is not');
        assert.equal(await attempt(tb, dev.key, '198.51.100.4'), 200);
        assert.equal(await attempt(tb, dev.key, '203.0.113.7'), 200, 'a valid key from the throttled client');
      } finally {
        await tb.close();
      }
    });

    it('without the setting, X-Forwarded-For is ignored (a spoofed one does not evade the throttle), and a valid key from a throttled address gets 200', async () => {
      const tb = await startBridge(mock.url, { AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '3' });
      try {
        const dev = await tb.addUser('no-proxy@example.com');
        for (let i = 0; i < 3; i++) assert.equal(await attempt(tb, BAD, `203.0.113.${i}`), 401);
        assert.equal(await attempt(tb, BAD, '198.51.100.99'), 429);
        assert.equal(await attempt(tb, dev.key), 200, 'a valid key is never throttled');
        assert.equal(await attempt(tb, BAD), 429, 'bad keys still are');
      } finally {
        await tb.close();
      }
    });

    it('live-event sockets through a trusted proxy are throttled by their X-Forwarded-For address', async () => {
      const tb = await startBridge(mock.url, {
        AIBRIDGE_TRUSTED_PROXIES: '127.0.0.1',
        AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '2',
      });
      try {
        const closeOf = async (forwardedFor: string): Promise<number> => {
          const c = liveClient(tb.url, { key: BAD, headers: { 'x-forwarded-for': forwardedFor } });
          return (await within(c.closed, 5000, 'the socket closed')).code;
        };
        assert.equal(await closeOf('203.0.113.7'), 4001);
        assert.equal(await closeOf('203.0.113.7'), 4001);
        assert.equal(await closeOf('203.0.113.7'), 4029, 'the guessing client is throttled');
        assert.equal(await closeOf('198.51.100.2'), 4001, 'another client behind the proxy is not');
      } finally {
        await tb.close();
      }
    });

    it('refuses a bad AIBRIDGE_TRUSTED_PROXIES at start, naming the setting', async () => {
      await assert.rejects(
        startBridge(mock.url, { AIBRIDGE_TRUSTED_PROXIES: '10.0.0.0/33' }),
        /AIBRIDGE_TRUSTED_PROXIES: "10\.0\.0\.0\/33" is not an IP address or CIDR/,
      );
    });
  });

  describe('live keys per user (AIBRIDGE_KEYS_PER_USER, 100 by default)', () => {
    let tb: TestBridge;
    before(async () => {
      tb = await startBridge(mock.url, { AIBRIDGE_KEYS_PER_USER: '3' });
    });
    after(async () => tb.close());

    it('refuses a key past the cap with 409 too_many_keys; a revoked key frees its place; other users are not affected', async () => {
      const dev = await tb.addUser('many-keys@example.com');
      const mint = () =>
        tb.api<{ id: string; key: string }>(
          'POST',
          '/api/v1/users/many-keys@example.com/keys',
          tb.adminKey,
          {},
        );
      const second = await mint();
      assert.equal(second.status, 201);
      assert.equal((await mint()).status, 201, 'the third');
      const fourth = await mint();
      assert.equal(fourth.status, 409, JSON.stringify(fourth.body));
      assert.equal((fourth.body as unknown as { error: { code: string } }).error.code, 'too_many_keys');
      const used = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'anthropic-version': '2023-06-01',
          'content-type': 'application/json',
        },
        body: MESSAGE(),
      });
      assert.equal(used.status, 200, 'the keys held still work');
      await used.arrayBuffer();
      assert.equal((await tb.api('DELETE', `/api/v1/keys/${second.body.id}`, tb.adminKey)).status, 200);
      assert.equal((await mint()).status, 201, 'a revoked key frees its place');
      await tb.addUser('few-keys@example.com');
    });
  });

  describe('admin sessions per key (AIBRIDGE_ADMIN_SESSIONS_PER_KEY, 20 by default)', () => {
    let tb: TestBridge;
    before(async () => {
      tb = await startBridge(mock.url);
    });
    after(async () => tb.close());

    it('a 21st sign-in with one key ends the oldest session; the newest works; other keys keep theirs', async () => {
      const signIn = (key: string): Promise<string> => sessionCookie(tb.url, key);
      const me = async (cookie: string): Promise<number> => {
        const res = await fetch(`${tb.url}/api/v1/me`, { headers: { cookie } });
        await res.text();
        return res.status;
      };
      const other = await tb.addUser('other-session@example.com');
      const otherCookie = await signIn(other.key);
      const cookies: string[] = [];
      for (let i = 0; i < 21; i++) cookies.push(await signIn(tb.adminKey));
      assert.equal(await me(cookies[0]!), 401, 'the oldest session was ended');
      assert.equal(await me(cookies[1]!), 200);
      assert.equal(await me(cookies[20]!), 200, 'the newest works');
      assert.equal(await me(otherCookie), 200, 'another key’s session is untouched');
      const stored = await tb.bridge.store.listDocs<{ keyId: string }>('admin_session');
      assert.equal(stored.length, 21);
    });
  });
});

describe('trusted proxies and JSON depth (units)', () => {
  const req = (peer: string, xff?: string): IncomingMessage =>
    ({
      socket: { remoteAddress: peer },
      headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
    }) as never;

  it('counts an IPv6 /64 as one address against AIBRIDGE_CONNECTIONS_PER_ADDRESS', () => {
    const server = new EventEmitter();
    const guard = new ConnectionGuard(
      { headersTimeoutMs: 10_000, bodyTimeoutMs: 0, connectionsPerAddress: 2 },
      new TrustedProxies([]),
      () => undefined,
    );
    guard.attach(server as never);
    const accept = (remoteAddress: string): { destroyed: boolean } => {
      const socket = Object.assign(new EventEmitter(), {
        remoteAddress,
        destroyed: false,
        destroy() {
          socket.destroyed = true;
        },
      });
      server.emit('connection', socket);
      return socket;
    };
    // One host rotating through its /64 is one client: the third address is over the cap.
    assert.equal(accept('2001:db8:1:2::1').destroyed, false);
    assert.equal(accept('2001:db8:1:2:ffff::9').destroyed, false);
    assert.equal(accept('2001:db8:1:2:0:0:0:abcd').destroyed, true);
    assert.equal(guard.openFrom('2001:db8:1:2::77'), 2);
    // Another /64, and IPv4, have their own share.
    assert.equal(accept('2001:db8:1:3::1').destroyed, false);
    assert.equal(accept('192.0.2.1').destroyed, false);
  });

  it('takes the right-most untrusted hop of X-Forwarded-For, only from a trusted peer', () => {
    const t = new TrustedProxies(parseTrustedProxies('10.0.0.0/8, ::1'));
    assert.equal(t.clientAddress(req('10.1.2.3', '203.0.113.5')), '203.0.113.5');
    assert.equal(t.clientAddress(req('::ffff:10.1.2.3', '203.0.113.5')), '203.0.113.5', 'IPv4-mapped peer');
    // A client cannot pick its address by prepending hops: the proxy appends the real one last.
    assert.equal(t.clientAddress(req('10.1.2.3', '1.1.1.1, 203.0.113.5')), '203.0.113.5');
    assert.equal(t.clientAddress(req('::1', '1.1.1.1, 203.0.113.5, 10.9.9.9')), '203.0.113.5', 'two proxies');
    assert.equal(t.clientAddress(req('198.51.100.1', '203.0.113.5')), '198.51.100.1', 'untrusted peer');
    assert.equal(t.clientAddress(req('10.1.2.3')), '10.1.2.3', 'no header: the proxy itself');
    const none = new TrustedProxies([]);
    assert.equal(none.clientAddress(req('127.0.0.1', '203.0.113.5')), '127.0.0.1');
    assert.equal(none.fastifyOption(), false);
  });

  it('rejects entries that are not addresses or CIDRs', () => {
    for (const bad of ['10.0.0.0/33', 'localhost', '10.0.0.1/8/8', '::1/129', ' , ', '10.0.0.0/-1'])
      assert.throws(() => parseTrustedProxies(bad), Error, bad);
    assert.deepEqual(parseTrustedProxies(' 127.0.0.1 ,fd00::/8'), ['127.0.0.1', 'fd00::/8']);
  });

  it('measures nesting in one pass, ignoring brackets in strings and escaped quotes', () => {
    const d = (s: string): number => jsonDepth(Buffer.from(s));
    assert.equal(d('{}'), 1);
    assert.equal(d('[[{"a":[1]}]]'), 4);
    assert.equal(d('{"a":"[[[[\\"[[["}'), 1);
    assert.equal(d('{"a":"\\\\","b":[[]]}'), 3, 'an escaped backslash ends before the quote');
    assert.equal(d('{"é[":["ü{"]}'), 2, 'multi-byte UTF-8');
    assert.equal(jsonDepth(Buffer.from('['.repeat(1_000_000)), 128), 129, 'stops past the limit');
    const shape = (s: string, limit?: number, values?: number, keys?: number) =>
      jsonShape(Buffer.from(s), Number.POSITIVE_INFINITY, limit, values, keys);
    assert.deepEqual(
      shape('{"a":[{},{"b":"[{}]"}],"c":[]}'),
      { depth: 3, containers: 5, values: 7, keys: 3 },
      'brackets, commas and colons in strings do not count',
    );
    assert.deepEqual(
      shape(`[${'{},'.repeat(999)}{}]`, 100),
      { depth: 2, containers: 101, values: 200, keys: 0 },
      'stops past the count',
    );
    // Keys and values: a string of any length is one value; each stops the scan past its limit.
    assert.deepEqual(shape(`{"k":"${'a,b:'.repeat(1000)}"}`), {
      depth: 1,
      containers: 1,
      values: 1,
      keys: 1,
    });
    assert.equal(shape(`{${'"k":0,'.repeat(99)}"k":0}`, undefined, undefined, 50).keys, 51);
    assert.equal(shape(`[${'0,'.repeat(99)}0]`, undefined, 50).values, 51);
  });
});
