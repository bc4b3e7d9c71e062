import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent } from 'undici';
import { requestUrl } from '../../server/providers/upstream-request';

/**
 * requestUrl replaces undici's request(url) on every upstream call, with a memo of parsed URLs:
 * what reaches the upstream must be what request(url) would have sent, however many URLs went
 * through the memo before (it starts over when full).
 */
describe('upstream requests by URL', () => {
  let server: http.Server;
  let origin: string;
  const agent = new Agent();
  const seen: { method: string; url: string; body: string; key: string | undefined }[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c;
      });
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          body,
          key: req.headers['x-api-key'] as string | undefined,
        });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await agent.close();
    await new Promise((r) => server.close(r));
  });

  it('sends method, path, query, headers and body as given, across more URLs than the memo holds', async () => {
    seen.length = 0;
    const n = 1_100;
    for (let i = 0; i < n; i++) {
      // A model name in the path and a query, as Gemini's and Bedrock's URLs have.
      const url = `${origin}/v1beta/models/m-${i}:streamGenerateContent?alt=sse&n=${i}`;
      const res = await requestUrl(url, {
        method: 'POST',
        headers: { 'x-api-key': `k${i}` },
        body: `{"i":${i}}`,
        dispatcher: agent,
      });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'ok');
    }
    assert.equal(seen.length, n);
    // A fragment would cut the path short, behind the route the bridge judged (the routes refuse
    // a `#` first; this is the backstop).
    for (const url of [`${origin}/v1/x#:countTokens`, `${origin}/v1/x?a=1#b`, `${origin}/v1/x#`])
      assert.throws(() => requestUrl(url, { method: 'POST', dispatcher: agent }), /must not contain "#"/);
    assert.equal(seen.length, n);
    for (let i = 0; i < n; i += 97) {
      assert.deepEqual(seen[i], {
        method: 'POST',
        url: `/v1beta/models/m-${i}:streamGenerateContent?alt=sse&n=${i}`,
        body: `{"i":${i}}`,
        key: `k${i}`,
      });
    }
    // The first URLs again, after the memo started over.
    await (
      await requestUrl(`${origin}/v1beta/models/m-0:streamGenerateContent?alt=sse&n=0`, {
        method: 'POST',
        headers: {},
        body: null,
        dispatcher: agent,
      })
    ).body.dump();
    assert.equal(seen.at(-1)?.url, '/v1beta/models/m-0:streamGenerateContent?alt=sse&n=0');
  });

  it('sends a URL longer than the memo keeps, query and all', async () => {
    seen.length = 0;
    const query = `q=${'%C3%A9x'.repeat(1_500)}`;
    for (let i = 0; i < 2; i++) {
      const res = await requestUrl(`${origin}/v1/messages?${query}&i=${i}`, {
        method: 'POST',
        headers: {},
        body: '{}',
        dispatcher: agent,
      });
      await res.body.dump();
    }
    assert.deepEqual(
      seen.map((s) => s.url),
      [`/v1/messages?${query}&i=0`, `/v1/messages?${query}&i=1`],
    );
  });

  it('normalises a URL as undici would (dot segments, no query)', async () => {
    seen.length = 0;
    const res = await requestUrl(`${origin}/a/./b/../v1/messages`, {
      method: 'POST',
      headers: {},
      body: '{}',
      dispatcher: agent,
    });
    await res.body.dump();
    assert.equal(seen[0]?.url, '/a/v1/messages');
  });

  it('rejects a URL that is not one', async () => {
    await assert.rejects(
      async () => requestUrl('not a url', { method: 'POST', headers: {}, body: null, dispatcher: agent }),
      TypeError,
    );
  });
});
