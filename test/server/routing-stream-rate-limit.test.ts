import assert from 'node:assert/strict';
import type http from 'node:http';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

// The same "one request over the whole per-minute limit" refusal that an HTTP 429 carries, as a
// Responses stream's response.failed (code rate_limit_exceeded: Codex parses exactly this shape,
// codex-rs/codex-api/src/sse/responses.rs try_parse_retry_after).
function failedTooLarge(model: string, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const base = { id: 'resp_tl', object: 'response', created_at: 1, model, output: [], usage: null };
  const ev = (type: string, data: unknown) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
  ev('response.created', { response: { ...base, status: 'in_progress', error: null } });
  ev('response.in_progress', { response: { ...base, status: 'in_progress', error: null } });
  ev('response.failed', {
    response: {
      ...base,
      status: 'failed',
      error: {
        code: 'rate_limit_exceeded',
        message:
          'Request too large for gpt-4.1 in organization org-x on tokens per min (TPM): Limit 30000, Requested 250000. The input or output tokens must be reduced in order to run successfully.',
      },
    },
  });
  res.end();
}

describe('a rate limit as a stream’s first event counts against no breaker either', function () {
  this.timeout(30000);
  let a: KeyedUpstream;
  let b: KeyedUpstream;
  let tb: TestBridge;
  let attacker: string;
  let victim: string;
  before(async () => {
    a = await new KeyedUpstream().start();
    b = await new KeyedUpstream().start();
    a.rule = (h, res) => {
      if (h.path.endsWith('/responses') && JSON.stringify(h.body).includes('HUGE')) {
        failedTooLarge(String(h.body.model), res);
        return 'handled';
      }
      return undefined;
    };
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        'oa-us': { type: 'openai', baseUrl: `${a.url}/v1`, apiKey: 'sk-oa-us' },
        'oa-eu': { type: 'openai', baseUrl: `${b.url}/v1`, apiKey: 'sk-oa-eu' },
      },
      routes: { 'gpt-4.1': ['oa-us', 'oa-eu'] },
    });
    tb = await startBridge(a.url, { AIBRIDGE_PROVIDERS_FILE: file });
    attacker = (await tb.addUser('attacker@example.com')).key;
    victim = (await tb.addUser('victim@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await a?.stop();
    await b?.stop();
  });

  it('five oversized streamed requests from one member leave every other member on the primary', async () => {
    for (let i = 0; i < 5; i++)
      await post(`${tb.url}/openai/v1/responses`, attacker, {
        model: 'gpt-4.1',
        stream: true,
        input: 'HUGE',
      });
    a.hits.length = 0;
    const v = await post(`${tb.url}/openai/v1/responses`, victim, { model: 'gpt-4.1', input: 'hi' });
    const health = await tb.api<{ breakers?: { provider: string; state: string }[] }>(
      'GET',
      '/healthz',
      tb.adminKey,
    );
    assert.deepEqual(
      {
        victim: v.status,
        primaryAsked: a.hits.length,
        breakers: (health.body.breakers ?? []).map((x) => `${x.provider}:${x.state}`),
      },
      { victim: 200, primaryAsked: 1, breakers: [] },
    );
  });
});
