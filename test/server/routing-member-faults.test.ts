import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

const O1 = 'sk-oai-o1-cccccccccccccccccccc';
const O2 = 'sk-oai-o2-dddddddddddddddddddd';
const SINGLE = 'sk-ant-single-hhhhhhhhhhhhhhhhhh';
const PRIMARY = 'sk-ant-primary-iiiiiiiiiiiiiiiiii';
const SPARE = 'sk-ant-spare-jjjjjjjjjjjjjjjjjjjj';

/** OpenAI's answer to ONE request bigger than the key's TPM: says nothing of other requests. */
const TOO_LARGE = {
  error: {
    message:
      'Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 450000. The input or output tokens must be reduced in order to run successfully.',
    type: 'tokens',
    param: null,
    code: 'rate_limit_exceeded',
  },
};
const ANTHROPIC_TOO_LARGE = {
  type: 'error',
  error: {
    type: 'rate_limit_error',
    message:
      'This request would exceed the rate limit for your organization of 30,000 input tokens per minute.',
  },
};

describe('what one member’s own bad requests may not do to everyone else; keys added at run time', function () {
  this.timeout(30000);
  let up: KeyedUpstream;
  let spare: KeyedUpstream;
  let tb: TestBridge;
  let attacker: string;
  let victim: string;

  before(async () => {
    up = await new KeyedUpstream().start();
    spare = await new KeyedUpstream().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        openai: {
          type: 'openai',
          baseUrl: `${up.url}/v1`,
          keys: [
            { name: 'o1', key: O1 },
            { name: 'o2', key: O2 },
          ],
        },
        single: { type: 'anthropic', baseUrl: up.url, apiKey: SINGLE },
        pool: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: [
            { name: 'a1', key: 'sk-ant-a1-kkkkkkkkkkkkkkkkkkkk' },
            { name: 'a2', key: 'sk-ant-a2-llllllllllllllllllll' },
          ],
        },
        primary: { type: 'anthropic', baseUrl: up.url, apiKey: PRIMARY },
        // No key in the file: an admin adds its keys at run time (docs/routing.md#key-pools).
        spare: { type: 'anthropic', baseUrl: spare.url },
      },
      routes: { 'claude-haiku-4-5': ['primary', 'spare'] },
    });
    tb = await startBridge(up.url, {
      AIBRIDGE_PROVIDERS_FILE: file,
      AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
    });
    attacker = (await tb.addUser('attacker@example.com')).key;
    victim = (await tb.addUser('victim@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
    await spare?.stop();
  });
  beforeEach(() => {
    up.hits.length = 0;
    spare.hits.length = 0;
    up.rule = () => undefined;
  });

  const chat = (key: string, content: string) =>
    post(`${tb.url}/openai/v1/chat/completions`, key, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content }],
    });

  it("one member's request over the whole per-minute limit (OpenAI 429 'Request too large … TPM') cools no pool key", async () => {
    up.rule = (h) => (JSON.stringify(h.body).includes('HUGE') ? { status: 429, body: TOO_LARGE } : undefined);
    const a = await chat(attacker, 'HUGE '.repeat(10));
    assert.equal(a.status, 429, 'the member gets the provider’s answer');
    assert.match(a.text, /Request too large/);
    const v = await chat(victim, 'hello');
    assert.equal(v.status, 200, "the victim's small request is served");
  });

  it('five 429s one member draws on a single-key instance do not open its breaker for everyone', async () => {
    up.rule = (h) =>
      JSON.stringify(h.body).includes('HUGE') ? { status: 429, body: ANTHROPIC_TOO_LARGE } : undefined;
    for (let i = 0; i < 5; i++) {
      const a = await post(`${tb.url}/single/v1/messages`, attacker, {
        model: 'claude-sonnet-4-6',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'HUGE' }],
      });
      assert.equal(a.status, 429);
    }
    const v = await post(`${tb.url}/single/v1/messages`, victim, {
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hello' }],
    });
    assert.equal(v.status, 200, "the victim's request is served");
  });

  it('429s on the free count_tokens pass-through (limited apart at Anthropic) do not cool the pool keys Messages uses', async () => {
    up.rule = (h) =>
      h.path.endsWith('/count_tokens')
        ? {
            status: 429,
            headers: { 'retry-after': '60' },
            body: {
              type: 'error',
              error: { type: 'rate_limit_error', message: 'token counting rate limit' },
            },
          }
        : undefined;
    for (let i = 0; i < 2; i++) {
      const c = await post(`${tb.url}/pool/v1/messages/count_tokens`, attacker, {
        model: 'claude-sonnet-4-6',
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.equal(c.status, 429, 'relayed as the provider sent it');
    }
    const v = await post(`${tb.url}/pool/v1/messages`, victim, {
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hello' }],
    });
    assert.equal(v.status, 200, "the victim's Messages request is served");
  });

  it('a route target whose keys an admin added at run time (none in the file) is used, as it is unrouted, pass-throughs too', async () => {
    const add = await tb.api('POST', '/api/v1/providers/spare/keys', tb.adminKey, { name: 's1', key: SPARE });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    // Unrouted, straight to the instance: served with the run-time key.
    const direct = await post(`${tb.url}/spare/v1/messages`, victim, {
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const count = await post(`${tb.url}/spare/v1/messages/count_tokens`, victim, {
      model: 'claude-sonnet-4-6',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(direct.status, 200);
    assert.equal(count.status, 200, count.text);
    // Routed: primary is down (503), spare should take over.
    up.rule = (h) =>
      h.key === PRIMARY
        ? { status: 503, body: { type: 'error', error: { type: 'api_error', message: 'down' } } }
        : undefined;
    const r = await post(`${tb.url}/primary/v1/messages`, victim, {
      model: 'claude-haiku-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(r.status, 200, 'the spare target serves');
    const [rec] = await tb.interceptions(1);
    assert.equal(rec!.provider, 'spare');
    assert.deepEqual(
      rec!.attempts?.map((a) => [a.provider, a.httpStatus]),
      [['primary', 503]],
    );
  });
});
