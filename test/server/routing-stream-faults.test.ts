import assert from 'node:assert/strict';
import type http from 'node:http';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

/**
 * A Responses stream the provider fails after its opening events: for the member's own input (an
 * image URL it cannot fetch), or for one request over the whole per-minute limit, which OpenAI says
 * in the words of a rate limit (code rate_limit_exceeded: Codex parses exactly this shape).
 */
function failedStream(
  model: string,
  res: http.ServerResponse,
  error: { code: string; message: string },
): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const base = { id: 'resp_bad', object: 'response', created_at: 1, model, output: [], usage: null };
  const ev = (type: string, data: unknown) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
  ev('response.created', { response: { ...base, status: 'in_progress', error: null } });
  ev('response.in_progress', { response: { ...base, status: 'in_progress', error: null } });
  ev('response.failed', {
    response: {
      ...base,
      status: 'failed',
      error,
      usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
    },
  });
  res.end();
}

const BAD_IMAGE = {
  code: 'invalid_image_url',
  message: 'Error while downloading https://example.invalid/x.png.',
};
const TOO_LARGE = {
  code: 'rate_limit_exceeded',
  message:
    'Request too large for gpt-4.1 in organization org-x on tokens per min (TPM): Limit 30000, Requested 250000. The input or output tokens must be reduced in order to run successfully.',
};

function responsesStream(model: string, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const base = { id: 'resp_ok', object: 'response', created_at: 1, model, output: [] };
  const ev = (type: string, data: unknown) =>
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
  ev('response.created', { response: { ...base, status: 'in_progress' } });
  ev('response.in_progress', { response: { ...base, status: 'in_progress' } });
  ev('response.output_item.added', {
    output_index: 0,
    item: { type: 'message', id: 'm1', role: 'assistant', status: 'in_progress', content: [] },
  });
  ev('response.output_text.delta', { output_index: 0, content_index: 0, item_id: 'm1', delta: 'ok' });
  ev('response.completed', {
    response: {
      ...base,
      status: 'completed',
      output: [
        {
          type: 'message',
          id: 'm1',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'ok', annotations: [] }],
        },
      ],
      usage: { input_tokens: 5, output_tokens: 1, total_tokens: 6 },
    },
  });
  res.end();
}

describe('a Responses stream failed at its first event, for the request’s own input or a rate limit', function () {
  this.timeout(30000);
  let a: KeyedUpstream;
  let b: KeyedUpstream;
  let tb: TestBridge;
  let attacker: string;
  let victim: string;

  before(async () => {
    a = await new KeyedUpstream().start();
    b = await new KeyedUpstream().start();
    const rule = (target: KeyedUpstream) => {
      target.rule = (h, res) => {
        if (!h.path.endsWith('/responses') || h.body.stream !== true) return undefined;
        const body = JSON.stringify(h.body);
        if (body.includes('example.invalid')) failedStream(String(h.body.model), res, BAD_IMAGE);
        else if (body.includes('HUGE')) failedStream(String(h.body.model), res, TOO_LARGE);
        else responsesStream(String(h.body.model), res);
        return 'handled';
      };
    };
    rule(a);
    rule(b);
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

  const ask = (key: string, image: string) =>
    post(`${tb.url}/openai/v1/responses`, key, {
      model: 'gpt-4.1',
      stream: true,
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'what is this' },
            { type: 'input_image', image_url: image },
          ],
        },
      ],
    });

  it('(an image the provider cannot fetch) is the member’s answer: not failed over, not counted against the breaker', async () => {
    for (let i = 0; i < 5; i++) {
      const bad = await ask(attacker, 'https://example.invalid/x.png');
      assert.match(bad.text, /invalid_image_url/, 'the member sees why');
    }
    assert.equal(
      b.hits.length,
      0,
      'a request the provider refused for its input is not sent to the next region',
    );
    a.hits.length = 0;
    const v = await ask(victim, 'https://good.example/cat.png');
    assert.equal(v.status, 200);
    assert.equal(
      a.hits.length,
      1,
      "the victim's request goes to the primary: the member's bad input says nothing of it",
    );
  });

  it('(one request over the whole per-minute limit) counts against no breaker: five leave every other member on the primary', async () => {
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
