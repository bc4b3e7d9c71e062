import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, type Dispatcher, errors } from 'undici';
import { Cancellation } from '../../server/core/cancellation';
import { leanRequest } from '../../server/proxy/lean-request';
import { eachChunk } from '../../server/proxy/upstream';

/**
 * leanRequest reads every metered and passthrough answer of the bridge (server/proxy/upstream.ts)
 * in place of undici's request() and its Readable body. These drive it against a real HTTP server
 * on loopback through a real undici Agent, in the ways the exchange reads an answer: listeners
 * (eachChunk), `for await`, a reader that stops or is stopped, and an upstream that breaks.
 */
describe('answers read without a stream (leanRequest)', () => {
  let server: http.Server;
  let origin: string;
  let agent: Agent;
  /** Per path: what the test's server does with the request. */
  const routes = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>();

  before(async () => {
    server = http.createServer((req, res) => {
      const route = routes.get(req.url ?? '');
      if (!route) {
        res.writeHead(404).end();
        return;
      }
      route(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    agent = new Agent({ headersTimeout: 2_000, bodyTimeout: 2_000 });
  });

  after(async () => {
    await agent.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const send = (
    path: string,
    body: string | null = null,
    signal?: Cancellation | AbortSignal,
    dispatcher: Dispatcher = agent,
  ): Promise<Dispatcher.ResponseData> =>
    leanRequest(dispatcher, {
      origin,
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: body === null ? null : Buffer.from(body),
      signal,
    });

  /** Reads a body through eachChunk, as the exchange relays an answer. */
  const chunksOf = async (res: Dispatcher.ResponseData): Promise<string> => {
    const parts: Buffer[] = [];
    await eachChunk(res.body, (c) => {
      parts.push(c);
      return undefined;
    });
    return Buffer.concat(parts).toString('utf8');
  };

  it('gives the status, the headers as undici parses them and the whole body, to listeners and to for await', async () => {
    routes.set('/json', (req, res) => {
      let got = '';
      req.on('data', (c: Buffer) => {
        got += c;
      });
      req.on('end', () => {
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.writeHead(201, { 'content-type': 'application/json', 'x-echo': got });
        res.end(JSON.stringify({ ok: true, echo: got }));
      });
    });
    const res = await send('/json', '{"q":1}');
    assert.equal(res.statusCode, 201);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-echo'], '{"q":1}');
    assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
    assert.deepEqual(JSON.parse(await chunksOf(res)), { ok: true, echo: '{"q":1}' });

    const again = await send('/json', 'x');
    const parts: Buffer[] = [];
    for await (const c of again.body as AsyncIterable<Buffer>) parts.push(c);
    assert.equal(JSON.parse(Buffer.concat(parts).toString('utf8')).echo, 'x');
  });

  it('keeps chunks that came before anyone read, in order, and ends after them', async () => {
    routes.set('/early', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < 50; i++) res.write(`data: ${i}\n\n`);
      res.end('data: end\n\n');
    });
    for (const read of ['listeners', 'iterator'] as const) {
      const res = await send('/early');
      // Everything has arrived (and ended) before the reader starts.
      await new Promise((r) => setTimeout(r, 100));
      let text = '';
      if (read === 'listeners') text = await chunksOf(res);
      else for await (const c of res.body as AsyncIterable<Buffer>) text += c.toString('utf8');
      const expected = `${Array.from({ length: 50 }, (_, i) => `data: ${i}\n\n`).join('')}data: end\n\n`;
      assert.equal(text, expected, read);
    }
  });

  it('holds the upstream connection while its reader waits, and reads on when it resumes', async () => {
    const total = 32 * 1024 * 1024;
    let sent = 0;
    routes.set('/big', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 97);
      const more = (): void => {
        while (sent < total) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    });
    const res = await send('/big');
    let got = 0;
    let waited = false;
    let sentWhileWaiting = 0;
    await eachChunk(res.body, (c) => {
      got += c.length;
      if (waited) return undefined;
      waited = true;
      // A client whose socket is full: the provider must be held, not read into memory.
      return new Promise((r) =>
        setTimeout(() => {
          sentWhileWaiting = sent;
          r(undefined);
        }, 300),
      );
    });
    assert.equal(got, total);
    // What the kernel's socket buffers hold on loopback (a few MB), not the whole answer.
    assert.ok(
      sentWhileWaiting < total / 2,
      `the provider sent ${sentWhileWaiting} bytes while the reader waited`,
    );
  });

  it('aborts the upstream request when its reader destroys the body, and the reader gets the reason', async () => {
    let closed!: () => void;
    const upstreamClosed = new Promise<void>((r) => {
      closed = r;
    });
    routes.set('/endless', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const t = setInterval(() => res.write('data: tick\n\n'), 5);
      res.on('close', () => {
        clearInterval(t);
        closed();
      });
    });
    const res = await send('/endless');
    const reason = new Error('too large');
    let n = 0;
    await assert.rejects(
      eachChunk(res.body, () => {
        if (++n === 3) res.body.destroy(reason);
        return undefined;
      }),
      (err) => err === reason,
    );
    await upstreamClosed;

    // for await with a break stops it too.
    const again = await send('/endless');
    const upstreamClosedAgain = new Promise<void>((r) => {
      closed = r;
    });
    for await (const _ of again.body as AsyncIterable<Buffer>) break;
    await upstreamClosedAgain;
  });

  it('rejects a reader when the upstream breaks mid-answer, and rejects the request when it fails before its headers', async () => {
    routes.set('/breaks', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const res = await send('/breaks');
    await assert.rejects(chunksOf(res));
    const again = await send('/breaks');
    await assert.rejects(async () => {
      for await (const _ of again.body as AsyncIterable<Buffer>);
    });

    routes.set('/hangs-up', (req) => req.socket.destroy());
    await assert.rejects(send('/hangs-up'), (err: Error) => err instanceof errors.SocketError);

    // A port nobody listens on.
    const closedServer = http.createServer();
    await new Promise<void>((r) => closedServer.listen(0, '127.0.0.1', r));
    const port = (closedServer.address() as AddressInfo).port;
    await new Promise((r) => closedServer.close(r));
    await assert.rejects(
      leanRequest(agent, {
        origin: `http://127.0.0.1:${port}`,
        path: '/',
        method: 'POST',
        headers: {},
        body: null,
      }),
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    );
  });

  it('applies the agent timeouts: before the headers to the request, after them to the body', async () => {
    const quick = new Agent({ headersTimeout: 200, bodyTimeout: 200 });
    try {
      routes.set('/no-headers', () => {});
      await assert.rejects(send('/no-headers', null, undefined, quick), errors.HeadersTimeoutError);
      routes.set('/stalls', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: one\n\n');
      });
      const res = await send('/stalls', null, undefined, quick);
      await assert.rejects(chunksOf(res), errors.BodyTimeoutError);
    } finally {
      await quick.destroy();
    }
  });

  it('is cancelled by its signal (a Cancellation or an AbortSignal) before and after the headers', async () => {
    routes.set('/slow-headers', (_req, res) => {
      setTimeout(() => res.writeHead(200).end('late'), 1_000);
    });
    const before = new Cancellation();
    const pending = send('/slow-headers', null, before);
    setTimeout(() => before.abort(new Error('client left')), 50);
    await assert.rejects(pending, /client left/);

    routes.set('/slow-body', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
    });
    const after = new AbortController();
    const res = await send('/slow-body', null, after.signal);
    const reading = chunksOf(res);
    setTimeout(() => after.abort(new Error('stopping')), 50);
    await assert.rejects(reading, /stopping/);

    const already = new Cancellation();
    already.abort(new Error('gone already'));
    await assert.rejects(send('/json', '{}', already), /gone already/);
  });

  it('skips informational answers (103 Early Hints) and reads the final one', async () => {
    routes.set('/hints', (_req, res) => {
      res.writeEarlyHints({ link: '</a.css>; rel=preload' });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"final":true}');
    });
    const res = await send('/hints');
    assert.equal(res.statusCode, 200);
    assert.equal(await chunksOf(res), '{"final":true}');
  });

  it('reads many answers on one connection with nothing left behind', async () => {
    routes.set('/small', (_req, res) => res.writeHead(200).end('ok'));
    for (let i = 0; i < 200; i++) {
      const res = await send('/small');
      assert.equal(await chunksOf(res), 'ok');
    }
    // The signal's listener goes with each answer.
    const c = new Cancellation();
    for (let i = 0; i < 50; i++) assert.equal(await chunksOf(await send('/small', null, c)), 'ok');
    assert.equal(c.listenerCount('abort'), 0);
  });
});
