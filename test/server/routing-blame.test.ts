import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

const A1 = 'sk-ant-k1-aaaaaaaaaaaaaaaaaaaa';
const A2 = 'sk-ant-k2-bbbbbbbbbbbbbbbbbbbb';
const O1 = 'sk-oai-o1-cccccccccccccccccccc';
const O2 = 'sk-oai-o2-dddddddddddddddddddd';
const P = ['p1', 'p2', 'p3', 'p4', 'p5'].map((n) => `sk-ant-${n}-eeeeeeeeeeeeeeeeeeee`);
const R = ['r1', 'r2', 'r3'].map((n) => `sk-ant-${n}-ffffffffffffffffffff`);
const BACKUP = 'sk-ant-backup-gggggggggggggggggg';
const LONE = 'sk-ant-lone-nnnnnnnnnnnnnnnnnnnn';

const CREDIT = {
  type: 'error',
  error: {
    type: 'invalid_request_error',
    message:
      'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
  },
};
const MISSING_SCOPE = {
  error: {
    message:
      "You have insufficient permissions for this operation. Missing scopes: api.responses.write. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
    type: 'invalid_request_error',
    param: null,
    code: null,
  },
};

describe('whose fault an organisation key’s error answer is: the key’s, the request’s, or the provider’s', function () {
  this.timeout(30000);
  let up: KeyedUpstream;
  let backup: KeyedUpstream;
  let tb: TestBridge;
  let member: string;
  let other: string;

  before(async () => {
    up = await new KeyedUpstream().start();
    backup = await new KeyedUpstream().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        anthropic: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: [
            { name: 'k1', key: A1 },
            { name: 'k2', key: A2 },
          ],
        },
        openai: {
          type: 'openai',
          baseUrl: `${up.url}/v1`,
          keys: [
            { name: 'o1', key: O1 },
            { name: 'o2', key: O2 },
          ],
        },
        big: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: P.map((key, i) => ({ name: `p${i + 1}`, key })),
        },
        big2: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: P.map((key, i) => ({ name: `q${i + 1}`, key: `${key}-2` })),
        },
        three: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: R.map((key, i) => ({ name: `r${i + 1}`, key })),
        },
        backup: { type: 'anthropic', baseUrl: backup.url, apiKey: BACKUP },
        broke: { type: 'anthropic', baseUrl: up.url, apiKey: 'sk-ant-broke-mmmmmmmmmmmmmmmmmm' },
        lone: { type: 'anthropic', baseUrl: up.url, apiKey: LONE },
      },
      routes: {
        'claude-opus-4-5': ['big', 'backup'],
        'claude-opus-4-1': ['big2', 'backup'],
        'claude-sonnet-4-5': ['broke', 'backup'],
      },
    });
    tb = await startBridge(up.url, {
      AIBRIDGE_PROVIDERS_FILE: file,
      AIBRIDGE_MCP_CREDENTIALS_KEY: randomBytes(32).toString('base64'),
    });
    member = (await tb.addUser('member@example.com')).key;
    other = (await tb.addUser('other@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
    await backup?.stop();
  });
  beforeEach(() => {
    up.hits.length = 0;
    backup.hits.length = 0;
    up.rule = () => undefined;
    backup.rule = () => undefined;
  });

  const msg = (key: string, model = 'claude-sonnet-4-6', prefix = '/anthropic') =>
    post(`${tb.url}${prefix}/v1/messages`, key, {
      model,
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });

  it('a pool key whose account is out of credit (Anthropic 400 "credit balance is too low") is taken out, with an alert naming why', async () => {
    up.rule = (h) => (h.key === A1 ? { status: 400, body: CREDIT } : undefined);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await msg(member)).status);
    const alerts = await tb.api<{ items: { rule: string; message: string }[] }>(
      'GET',
      '/api/v1/alerts',
      tb.adminKey,
    );
    assert.deepEqual(
      statuses,
      [200, 200, 200, 200, 200, 200],
      'every request served by the key that has credit',
    );
    assert.equal(
      up.count((h) => h.key === A1),
      1,
      'the key is asked once, then left out',
    );
    assert.ok(
      alerts.body.items.some(
        (a) => a.rule === 'upstream_key_auth_failed' && /"k1".*credit balance is too low/.test(a.message),
      ),
      JSON.stringify(alerts.body),
    );
  });

  it('a routed primary whose single key is out of credit fails over to the backup region', async () => {
    up.rule = (h) => (h.key.startsWith('sk-ant-broke') ? { status: 400, body: CREDIT } : undefined);
    const r = await msg(member, 'claude-sonnet-4-5');
    assert.equal(r.status, 200, 'the backup serves');
  });

  it('an OpenAI pool key answering insufficient_quota (a 429 no wait mends) is taken out at once, with an alert, not cooled and retried', async () => {
    const QUOTA = {
      error: {
        message: 'You exceeded your current quota, please check your plan and billing details.',
        type: 'insufficient_quota',
        param: null,
        code: 'insufficient_quota',
      },
    };
    up.rule = (h) => (h.key === O1 ? { status: 429, body: QUOTA } : undefined);
    const chat = () =>
      post(`${tb.url}/openai/v1/chat/completions`, member, {
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'hi' }],
      });
    const st: number[] = [];
    // Past the first cooldown a 429 would have given it (1 s).
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 3; i++) st.push((await chat()).status);
      if (round === 0) await new Promise((r) => setTimeout(r, 1_200));
    }
    const alerts = await tb.api<{ items: { rule: string }[] }>('GET', '/api/v1/alerts', tb.adminKey);
    assert.ok(up.count((h) => h.key === O1) <= 1, 'a key out of quota is not retried every few seconds');
    assert.deepEqual(st, [200, 200, 200, 200, 200, 200]);
    assert.ok(alerts.body.items.some((a) => a.rule === 'upstream_key_auth_failed'));
  });

  it("one member's Responses call on restricted keys (401 missing scope) takes no key out: a 502 for them, served for everyone else", async () => {
    up.rule = (h) => (h.path.endsWith('/responses') ? { status: 401, body: MISSING_SCOPE } : undefined);
    const r = await post(`${tb.url}/openai/v1/responses`, member, { model: 'gpt-4o', input: 'hi' });
    assert.equal(r.status, 502);
    assert.match(r.text, /upstream_auth_failed/);
    assert.match(r.text, /Missing scopes: api\.responses\.write/);
    const keys = await tb.api<{ items: { name: string; state: string }[] }>(
      'GET',
      '/api/v1/providers/openai/keys',
      tb.adminKey,
    );
    assert.equal(keys.body.items.find((k) => k.name === 'o2')?.state, 'active');
    // Another member's ordinary Chat Completions request, which these keys are scoped for.
    const chat = await post(`${tb.url}/openai/v1/chat/completions`, other, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(chat.status, 200, "another member's chat request is served");
  });

  it('the free input_tokens pass-through drawing 401 (missing scope) takes no key out either', async () => {
    // The key the test before found out of quota is back.
    for (const k of ['o1', 'o2'])
      assert.equal(
        (await tb.api('PATCH', `/api/v1/providers/openai/keys/${k}`, tb.adminKey, { disabled: false }))
          .status,
        200,
      );
    const before = await post(`${tb.url}/openai/v1/chat/completions`, other, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(before.status, 200);
    up.rule = (h) => (h.path.includes('/responses') ? { status: 401, body: MISSING_SCOPE } : undefined);
    for (let i = 0; i < 2; i++) {
      const r = await post(`${tb.url}/openai/v1/responses/input_tokens`, member, {
        model: 'gpt-4o',
        input: 'hi',
      });
      assert.equal(
        r.status,
        502,
        'the member is told the organisation key lacks the scope, as on the metered route',
      );
      assert.match(r.text, /Missing scopes: api\.responses\.write/);
    }
    const chat = await post(`${tb.url}/openai/v1/chat/completions`, other, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(chat.status, 200, "another member's chat request is served");
    const keys = await tb.api<{ items: { state: string }[] }>(
      'GET',
      '/api/v1/providers/openai/keys',
      tb.adminKey,
    );
    assert.deepEqual(
      keys.body.items.map((k) => k.state),
      ['active', 'active'],
    );
  });

  it('a routed request whose first target is a 5-key pool, overloaded (529), goes on to the backup target', async () => {
    up.rule = () => ({
      status: 529,
      body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
    });
    const r = await msg(member, 'claude-opus-4-5');
    assert.equal(backup.hits.length, 1, 'the backup target is tried');
    assert.equal(r.status, 200);
  });

  it('so does one whose 5 pool keys are all rate-limited (429): at most three tries per target, not a cap shared by all', async () => {
    up.rule = () => ({
      status: 429,
      body: { type: 'error', error: { type: 'rate_limit_error', message: 'rate limited' } },
    });
    const r = await msg(member, 'claude-opus-4-1');
    assert.equal(backup.hits.length, 1, 'the backup target is tried');
    assert.equal(r.status, 200);
    assert.equal(up.hits.length, 3, 'three keys of the pool are tried');
  });

  it('a pool of 3 keys all revoked: the member is told the organisation key failed (502), not shown a raw 401', async () => {
    up.rule = (h) =>
      R.includes(h.key)
        ? {
            status: 401,
            body: { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } },
          }
        : undefined;
    const r = await msg(member, 'claude-sonnet-4-6', '/three');
    const r2 = await msg(member, 'claude-sonnet-4-6', '/three');
    assert.equal(r.status, 502, 'like every later request and like a single key: 502 upstream_auth_failed');
    assert.match(
      r.text,
      /refused the organisation's credential for instance \\"three\\" \(401: invalid x-api-key\)/,
    );
    assert.equal(r2.status, 502);
  });

  it('pass-throughs (count_tokens) answer a refused organisation key with the same 502 as metered routes, not the raw 401', async () => {
    up.rule = (h) =>
      h.key === LONE
        ? {
            status: 401,
            body: { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } },
          }
        : undefined;
    const c = await post(`${tb.url}/lone/v1/messages/count_tokens`, member, {
      model: 'claude-sonnet-4-6',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(c.status, 502, c.text);
    assert.equal(JSON.parse(c.text).error.type, 'api_error', "in Anthropic's error shape");
    assert.match(
      c.text,
      /refused the organisation's credential for instance \\"lone\\" \(401: invalid x-api-key\)/,
    );
    const alerts = await tb.api<{ items: { rule: string; message: string }[] }>(
      'GET',
      '/api/v1/alerts',
      tb.adminKey,
    );
    assert.ok(
      alerts.body.items.some((a) => a.rule === 'upstream_key_auth_failed' && a.message.includes('"lone"')),
      'and the admin is alerted, as for the metered route',
    );
  });
});
