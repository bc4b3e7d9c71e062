import assert from 'node:assert/strict';
import http from 'node:http';
import zlib from 'node:zlib';
import { framedHold } from '../../server/providers/tool-hold';
import type { Interception } from '../../shared/interception';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { listenOnLoopback } from '../helpers/loopback';

/** An upstream that answers each request with exactly the bytes the test gives, in the chunks given. */
class RawUpstream {
  next: ((res: http.ServerResponse) => Promise<void> | void) | undefined;
  private readonly server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => void this.next?.(res));
  });
  url = '';
  private stopFn: (() => Promise<void>) | undefined;
  async start(): Promise<this> {
    const l = await listenOnLoopback(this.server);
    this.url = l.origin;
    this.stopFn = () => l.stop();
    return this;
  }
  stop(): Promise<void> {
    return this.stopFn?.() ?? Promise.resolve();
  }
}

const sse = (res: http.ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
};
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Anthropic's first event, with the 1 output token its usage always says there. */
const messageStart = (id: string): string =>
  `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, usage: { input_tokens: 20, output_tokens: 1 } } })}\n\n`;

describe('stream framing the bridge must keep, and meter', function () {
  this.timeout(60_000);
  let up: RawUpstream;
  let tb: TestBridge;
  let key: string;

  before(async () => {
    up = await new RawUpstream().start();
    tb = await startBridge(up.url, {
      AIBRIDGE_OPENAI_BASE_URL: `${up.url}/v1`,
      AIBRIDGE_OPENAI_API_KEY: 'sk-org-test',
    });
    key = (await tb.addUser('framing@example.com')).key;
  });
  after(async () => {
    await tb.close();
    await up.stop();
  });

  const post = (path: string, body: unknown) =>
    fetch(`${tb.url}${path}`, {
      method: 'POST',
      headers: {
        'x-api-key': key,
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify(body),
    });
  const lastRecord = async (): Promise<Interception> => (await tb.interceptions(1, key))[0]!;
  const streamed = () =>
    post('/anthropic/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 1000,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });

  it('a Chat Completions stream the bridge rewrites keeps its heartbeats, at once, and a last event without its blank line', async () => {
    // Without stream_options.include_usage the bridge asks for usage and rewrites the stream.
    up.next = async (res) => {
      sse(res);
      res.write(': ping\n\n');
      await pause(400);
      res.write(': OPENROUTER PROCESSING\n\n');
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4.1', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4.1', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      res.write(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4.1', choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } })}\n\n`,
      );
      // Its last line whole, the blank line after it missing (a line cut short is discarded, as
      // an SSE client discards it).
      res.end('data: [DONE]\n');
    };
    const started = Date.now();
    const res = await post('/openai/v1/chat/completions', {
      model: 'gpt-4.1',
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    let text = Buffer.from(first.value!).toString();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += Buffer.from(r.value).toString();
    }
    assert.ok(
      firstAt < 300,
      `the first heartbeat reached the client at ${firstAt} ms, not with the first event`,
    );
    assert.match(text, /^: ping\n\n/);
    assert.match(text, /: OPENROUTER PROCESSING\n\n/);
    assert.match(
      text,
      /data: \[DONE\]\n\n$/,
      'the last event, its blank line missing upstream, reaches the client whole',
    );
    assert.doesNotMatch(text, /"usage"/, 'the usage the bridge asked for is still left out');
    const rec = await lastRecord();
    assert.equal(rec.usage.output, 3);
  });

  it('an Anthropic stream closed cleanly before its message_delta is billed a token per content event, not 1', async () => {
    const deltas = 30;
    up.next = (res) => {
      sse(res);
      res.write(messageStart('msg_1'));
      res.write(
        `event: content_block_start\ndata: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } })}\n\n`,
      );
      for (let i = 0; i < deltas; i++)
        res.write(
          `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: `w${i} ` } })}\n\n`,
        );
      res.end();
    };
    await (await streamed()).text();
    const rec = await lastRecord();
    assert.ok(rec.usage.output >= deltas, `output ${rec.usage.output}`);
    assert.equal(rec.usageEstimated, true);
  });

  it('an Anthropic stream whose last event has no blank line after it is metered from that event', async () => {
    up.next = (res) => {
      sse(res);
      res.write(messageStart('msg_2'));
      res.write(
        `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } })}\n\n`,
      );
      res.end(
        `event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 12 } })}`,
      );
    };
    await (await streamed()).text();
    const rec = await lastRecord();
    assert.equal(rec.usage.output, 12);
    assert.ok(!rec.usageEstimated);
  });

  it('an answer the upstream compressed anyway (gzip stream, br JSON) is metered, and relayed decoded', async () => {
    const events = [
      messageStart('msg_z'),
      `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Zipped' } })}\n\n`,
      `event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } })}\n\n`,
    ].join('');
    up.next = (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
      res.end(zlib.gzipSync(events));
    };
    const streamed = await post('/anthropic/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(streamed.headers.get('content-encoding'), null);
    assert.equal(await streamed.text(), events);
    assert.equal((await lastRecord()).usage.output, 7);

    const json = {
      id: 'msg_j',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-6',
      content: [{ type: 'text', text: 'ok' }],
      stop_reason: 'end_turn',
      usage: { input_tokens: 40, output_tokens: 9 },
    };
    up.next = (res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'br' });
      res.end(zlib.brotliCompressSync(JSON.stringify(json)));
    };
    const whole = await post('/anthropic/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.deepEqual(await whole.json(), json);
    const rec = await lastRecord();
    assert.deepEqual([rec.usage.input, rec.usage.output], [40, 9]);
  });

  it('a stream in an encoding the bridge does not decode is billed as an unreadable answer, not as free', async () => {
    /** One streamed turn, read to its end; its record. */
    const streamedRecord = async () => {
      const res = await post('/anthropic/v1/messages', {
        model: 'claude-sonnet-4-6',
        max_tokens: 100,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      await res.arrayBuffer();
      return lastRecord();
    };
    const events = [
      messageStart('msg_d'),
      `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Deflated' } })}\n\n`,
      `event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } })}\n\n`,
    ].join('');
    const compressed = zlib.deflateSync(events);
    up.next = (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'deflate' });
      res.end(compressed);
    };
    const streamed = await post('/anthropic/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 100,
      stream: true,
      messages: [{ role: 'user', content: 'hi' }],
    });
    // Relayed as it came, encoding and all (fetch decodes it here).
    assert.equal(streamed.headers.get('content-encoding'), 'deflate');
    assert.equal(await streamed.text(), events);
    const rec = await lastRecord();
    assert.equal(rec.status, 'ok');
    assert.equal(rec.usageEstimated, true);
    assert.ok(rec.usage.input > 0 && rec.usage.output > 0, JSON.stringify(rec.usage));
    assert.ok(rec.costUsd !== null && rec.costUsd > 0, 'not recorded as free');

    // Bytes it does not decode that happen to hold a `\n:` (read as a comment) are still unreadable.
    up.next = (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'x-custom' });
      res.end(
        Buffer.concat([Buffer.from([0x78, 0x9c, 0x01, 0x02]), Buffer.from('\n: noise\n\n'), compressed]),
      );
    };
    const noisy = await streamedRecord();
    assert.equal(noisy.usageEstimated, true);
    assert.ok(
      noisy.costUsd !== null && noisy.costUsd > 0,
      'a stray comment in undecoded bytes is no reading',
    );

    // A stream the bridge can read, with nothing in it but heartbeats, is not "unreadable".
    up.next = (res) => {
      sse(res);
      res.write(': ping\n\n');
      res.end(': ping\n\n');
    };
    const pings = await streamedRecord();
    assert.ok(!pings.usageEstimated, JSON.stringify(pings.usage));
    assert.equal(pings.costUsd, 0);
  });

  it('a complete stream without a finish reason keeps the usage it reported; an empty gzip-labelled 429 reaches the client as the 429', async () => {
    const chunk = (body: Record<string, unknown>) =>
      `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4.1', ...body })}\n\n`;
    up.next = (res) => {
      sse(res);
      // An openai-compatible server that never says why it stopped, but reports its usage.
      res.write(chunk({ choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }));
      for (const w of ['a', 'b', 'c', 'd'])
        res.write(chunk({ choices: [{ index: 0, delta: { content: w }, finish_reason: null }] }));
      res.write(chunk({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 } }));
      res.end('data: [DONE]\n\n');
    };
    const res = await post('/openai/v1/chat/completions', {
      model: 'gpt-4.1',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    await res.text();
    const rec = await lastRecord();
    assert.equal(rec.usage.output, 4, 'what the server reported, not a floor over its chunks');
    assert.ok(!rec.usageEstimated);

    up.next = (r) => {
      r.writeHead(429, { 'content-encoding': 'gzip', 'retry-after': '7', 'content-length': '0' });
      r.end();
    };
    const limited = await post('/openai/v1/chat/completions', {
      model: 'gpt-4.1',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '7');
    await limited.arrayBuffer();
  });

  it('a JSON answer past the read limit is billed no more than its max_tokens', async () => {
    up.next = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const filler = 'x'.repeat(1024 * 1024);
      res.write('{"id":"msg_big","type":"message","role":"assistant","content":[{"type":"text","text":"');
      for (let i = 0; i < 34; i++) res.write(filler);
      res.end('"}],"usage":{"input_tokens":12,"output_tokens":800}}');
    };
    const res = await post('/anthropic/v1/messages', {
      model: 'claude-sonnet-4-6',
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'hi' }],
    });
    await res.arrayBuffer();
    const rec = await lastRecord();
    assert.equal(rec.usage.output, 1024, 'capped at max_tokens, not 34 MB ÷ 4');
  });
});

describe('a stream that starts with a byte order mark, under a deny rule', function () {
  this.timeout(60_000);
  it('is judged as without one: the denied call in its first event is blocked and recorded', async () => {
    const up = await new RawUpstream().start();
    const tb = await startBridge(up.url, {
      AIBRIDGE_OPENAI_BASE_URL: `${up.url}/v1`,
      AIBRIDGE_OPENAI_API_KEY: 'sk-org',
    });
    try {
      const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
        rules: [{ id: 'rm-root', tool: '*', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' }],
      });
      assert.equal(put.status, 200);
      const { key } = await tb.addUser('bom@example.com');
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', model: 'gpt-4.1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      up.next = (res) => {
        sse(res);
        res.end(
          '\ufeff' +
            chunk({
              role: 'assistant',
              content: null,
              tool_calls: [
                {
                  index: 0,
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'shell', arguments: '{"command":"rm -rf /"}' },
                },
              ],
            }) +
            chunk({}, 'tool_calls') +
            `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 } })}\n\n` +
            'data: [DONE]\n\n',
        );
      };
      const r = await fetch(`${tb.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4.1',
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: 'user', content: 'tidy' }],
          tools: [{ type: 'function', function: { name: 'shell', parameters: { type: 'object' } } }],
        }),
      });
      const text = await r.text();
      assert.match(text, /AI Bridge blocked/);
      assert.doesNotMatch(text, /rm -rf \/"/, 'the denied arguments never reach the client');
      const rec = (await tb.interceptions(1, key))[0]!;
      assert.equal(rec.toolCalls.length, 1);
    } finally {
      await tb.close();
      await up.stop();
    }
  });
});

describe('the tool-call hold over large events', () => {
  it('passes one 10 MB event through in 64 KB chunks at the cost of one scan, frames and bytes intact', () => {
    const frames: string[] = [];
    const hold = framedHold({
      onFrame: ({ raw }) => {
        frames.push(raw);
        return raw;
      },
      end: () => '',
    });
    const big = `event: image\r\ndata: ${'y'.repeat(10 * 1024 * 1024)}\r\n\r\n`;
    const stream = `\ufeff: hi\n\n${big}data: last\r`;
    let out = '';
    const started = Date.now();
    for (let i = 0; i < stream.length; i += 65_536) out += hold.push(stream.slice(i, i + 65_536));
    out += hold.end();
    const ms = Date.now() - started;
    assert.equal(out, stream, 'every byte, the byte order mark and a lone last \\r included');
    assert.deepEqual(
      frames.map((f) => f.length),
      ['\ufeff: hi\n\n'.length, big.length, 'data: last\r'.length],
    );
    // Rescanning the buffer on every chunk took seconds for this (quadratic); one scan is tens of ms.
    assert.ok(ms < 2_000, `${ms} ms`);
  });

  it('ends a frame on a blank line split across chunks at every place (\\n\\n, \\r\\n\\r\\n, \\r\\r)', () => {
    for (const text of [
      'data: a\n\ndata: b\n\n',
      'data: a\r\n\r\ndata: b\r\n\r\n',
      'data: a\r\rdata: b\r\r',
    ]) {
      for (let cut = 1; cut < text.length; cut++) {
        const frames: string[] = [];
        const hold = framedHold({
          onFrame: ({ raw }) => {
            frames.push(raw);
            return raw;
          },
          end: () => '',
        });
        const out = hold.push(text.slice(0, cut)) + hold.push(text.slice(cut)) + hold.end();
        assert.equal(out, text);
        assert.equal(frames.length, 2, `${JSON.stringify(text)} cut at ${cut}: ${JSON.stringify(frames)}`);
      }
    }
  });
});
