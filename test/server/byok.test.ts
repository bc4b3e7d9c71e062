import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import OpenAI, { APIError as OpenAIError } from 'openai';
import { loadConfig } from '../../server/config';
import { ownCredential } from '../../server/routing/byok';
import type { Interception } from '../../shared/interception';
import type { BudgetStatus, UsageReport } from '../../shared/spend';
import { CLAUDE, claudeEnv } from '../helpers/agent-cli';
import { AnthropicMock, MOCK_TEXT, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { type LiveTestClient, liveClient } from '../helpers/live-client';
import { OPENAI_TEXT, OPENAI_UPSTREAM_KEY, OpenAIMock } from '../helpers/openai-mock';
import { testPostgres } from '../helpers/postgres';
import { run } from '../helpers/run';

/**
 * The mocks accept only their own upstream key. Here that key is the USER's own credential: the
 * bridge holds a different organisation key, so a request the mock answers proves the user's key
 * went upstream and the organisation's did not.
 */
const ORG_ANTHROPIC_KEY = 'sk-ant-organisation-key-not-the-users-000';
const ORG_OPENAI_KEY = 'sk-proj-organisation-key-not-the-users-000';
/** A Claude subscription token, as Claude Code sends it after `claude login` (Authorization: Bearer). */
const USER_OAUTH_TOKEN = 'sk-ant-oat01-users-own-subscription-token-0123456789';

/** Every file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('bring your own key (X-AIBridge-Key)', function () {
  this.timeout(120_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;
  let live: LiveTestClient;
  /** Every WebSocket message the admin's live socket received, as sent. */
  const liveBytes: string[] = [];
  /** Every admin API response body this test read. */
  const apiBytes: string[] = [];
  let platform: { key: string; user: { id: string; email: string } };
  let outsider: { key: string; user: { id: string; email: string } };
  let providersFile: string;

  const anthropicFor = (bridgeKey: string, own: { apiKey?: string; authToken?: string }): Anthropic =>
    new Anthropic({
      apiKey: own.apiKey ?? null,
      authToken: own.authToken ?? null,
      baseURL: `${tb.url}/anthropic`,
      defaultHeaders: { 'X-AIBridge-Key': bridgeKey },
      maxRetries: 0,
    });
  const openaiFor = (bridgeKey: string, ownKey: string): OpenAI =>
    new OpenAI({
      apiKey: ownKey,
      baseURL: `${tb.url}/openai/v1`,
      defaultHeaders: { 'X-AIBridge-Key': bridgeKey },
      maxRetries: 0,
    });
  const adminApi = async <T>(method: string, route: string, body?: unknown) => {
    const res = await tb.api<T>(method, route, tb.adminKey, body);
    apiBytes.push(JSON.stringify(res.body));
    return res;
  };
  const recordOf = async (id: string): Promise<Interception> =>
    eventually(async () => {
      await tb.bridge.recorder.drain();
      const r = await adminApi<Interception>('GET', `/api/v1/interceptions/${id}`);
      return r.status === 200 ? r.body : undefined;
    });

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    const dir = await tempDir('aibridge-byok-conf-');
    providersFile = path.join(dir, 'providers.json');
    await fs.writeFile(
      providersFile,
      JSON.stringify({
        // Nothing listens on port 9: a Bedrock request that got past the refusal would fail differently.
        providers: { bedrock: { type: 'bedrock', region: 'us-east-1', baseUrl: 'http://127.0.0.1:9' } },
        byok: { teams: ['platform'] },
      }),
    );
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_ANTHROPIC_API_KEY: ORG_ANTHROPIC_KEY,
      AIBRIDGE_OPENAI_API_KEY: ORG_OPENAI_KEY,
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_PROVIDERS_FILE: providersFile,
      // Everything the bridge can log, so the grep below sees the most it could have written.
      AIBRIDGE_LOG_LEVEL: 'trace',
      AIBRIDGE_AUDIT_CAPTURE: 'full',
    });
    platform = await tb.addUser('byok-dev@example.com', { team: 'platform' });
    outsider = await tb.addUser('byok-outsider@example.com', { team: 'sales' });
    live = liveClient(tb.url, { key: tb.adminKey });
    live.ws.on('message', (data) => liveBytes.push(data.toString()));
    await new Promise((resolve) => live.ws.once('open', resolve));
  });
  after(async () => {
    await live.close();
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it("Anthropic SDK: the user's own key reaches the upstream, the organisation's does not, billedTo user", async () => {
    const before = anthropic.messageRequests().length;
    const res = await anthropicFor(platform.key, { apiKey: UPSTREAM_KEY })
      .messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'Own key, please' }],
      })
      .withResponse();
    assert.equal((res.data.content[0] as { text: string }).text, MOCK_TEXT);
    const seen = anthropic.messageRequests().slice(before);
    assert.equal(seen.length, 1);
    // @anthropic-ai/sdk sends `apiKey` as a Bearer token; it goes upstream as it came.
    assert.equal(seen[0]!.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen[0]!.headers['x-api-key'], undefined, 'no organisation key beside it');
    assert.ok(!JSON.stringify(seen[0]!.headers).includes(ORG_ANTHROPIC_KEY), 'no organisation key upstream');
    assert.ok(!JSON.stringify(seen[0]!.headers).includes(platform.key), 'no bridge key upstream');

    const rec = await recordOf(res.response.headers.get('x-aibridge-interception-id')!);
    assert.equal(rec.billedTo, 'user');
    assert.equal(rec.userEmail, 'byok-dev@example.com');
    assert.equal(rec.team, 'platform');
    assert.equal(rec.status, 'ok');
    assert.ok(rec.costUsd !== null && rec.costUsd > 0, 'the cost is known, and marked as the user’s');
    const ended = await live.next('interception.ended', (e) => e.interceptionId === rec.id);
    assert.equal(ended.billedTo, 'user', 'live clients (the status bar) keep it out of the spend');
  });

  it('a subscription token (Authorization: Bearer sk-ant-oat…) is passed through as it came', async () => {
    const before = anthropic.messageRequests().length;
    // The mock takes only its x-api-key: it refuses the token, but the point is what it was sent.
    await assert.rejects(
      anthropicFor(platform.key, { authToken: USER_OAUTH_TOKEN }).messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'Subscription' }],
      }),
      (err: unknown) => err instanceof APIError && err.status === 401,
    );
    const [seen] = anthropic.messageRequests().slice(before);
    assert.ok(seen);
    assert.equal(seen.headers.authorization, `Bearer ${USER_OAUTH_TOKEN}`);
    assert.equal(seen.headers['x-api-key'], undefined, 'no organisation key beside the token');
  });

  it("OpenAI SDK: the user's own key goes upstream on Chat Completions and Responses", async () => {
    const client = openaiFor(platform.key, OPENAI_UPSTREAM_KEY);
    const before = openai.modelRequests().length;
    const chat = await client.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'Own OpenAI key' }],
    });
    assert.equal(chat.choices[0]?.message.content, OPENAI_TEXT);
    const stream = await client.responses.create({
      model: 'gpt-5',
      input: 'Own key, streamed',
      stream: true,
    });
    for await (const _ of stream) {
      // Drained: the record is written once the stream ends.
    }
    const seen = openai.modelRequests().slice(before);
    assert.equal(seen.length, 2);
    for (const s of seen) {
      assert.equal(s.headers.authorization, `Bearer ${OPENAI_UPSTREAM_KEY}`);
      assert.ok(!JSON.stringify(s.headers).includes(ORG_OPENAI_KEY));
      assert.ok(!JSON.stringify(s.headers).includes(platform.key));
    }
    const recs = await tb.interceptions(4);
    const mine = recs.filter((r) => r.provider === 'openai');
    assert.equal(mine.length, 2);
    assert.ok(mine.every((r) => r.billedTo === 'user' && r.status === 'ok'));
  });

  it('with their own key a member reaches stored responses the bridge never saw: the provider keeps them to that key', async () => {
    const client = openaiFor(platform.key, OPENAI_UPSTREAM_KEY);
    const before = openai.requests.length;
    // Made with the same key outside the bridge: the organisation's key could not reach it.
    await client.responses.retrieve('resp_made_outside_the_bridge');
    await client.responses.create({
      model: 'gpt-5',
      input: 'go on',
      previous_response_id: 'resp_made_outside_the_bridge',
    });
    const seen = openai.requests.slice(before).map((r) => `${r.method} ${r.url.split('?')[0]}`);
    assert.deepEqual(seen, ['GET /v1/responses/resp_made_outside_the_bridge', 'POST /v1/responses']);
  });

  it('without X-AIBridge-Key nothing changes: the bridge key in the usual header, the organisation key upstream', async () => {
    // The mock refuses the organisation key here, which is exactly what shows it was the one sent
    // (and the member is told it is the organisation's key, not theirs: a 502).
    const before = anthropic.messageRequests().length;
    const client = new Anthropic({ apiKey: platform.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const res = await client.messages
      .create({ model: 'claude-sonnet-4-6', max_tokens: 10, messages: [{ role: 'user', content: 'Org' }] })
      .withResponse()
      .catch((err: unknown) => err);
    assert.ok(res instanceof APIError && res.status === 502, String(res));
    assert.match(res.message, /refused the organisation's credential/);
    const [seen] = anthropic.messageRequests().slice(before);
    assert.equal(seen?.headers['x-api-key'], ORG_ANTHROPIC_KEY);
    const id = res.headers?.get('x-aibridge-interception-id');
    assert.ok(id);
    const rec = await recordOf(id);
    assert.equal(rec.billedTo, undefined, 'absent: the organisation pays');
  });

  it('a team that may not: 403 byok_not_allowed in the API’s shape, and the upstream gets nothing', async () => {
    const beforeA = anthropic.requests.length;
    const beforeO = openai.requests.length;
    await assert.rejects(
      anthropicFor(outsider.key, { apiKey: UPSTREAM_KEY }).messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'Not allowed' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof APIError);
        assert.equal(err.status, 403);
        // Anthropic's shape has a fixed set of error types: 403 is a permission_error.
        const body = err.error as { type: string; error: { type: string; message: string } };
        assert.equal(body.type, 'error');
        assert.equal(body.error.type, 'permission_error');
        assert.match(body.error.message, /own provider credential.*team "sales"/);
        return true;
      },
    );
    await assert.rejects(
      openaiFor(outsider.key, OPENAI_UPSTREAM_KEY).chat.completions.create({
        model: 'gpt-5',
        messages: [{ role: 'user', content: 'Not allowed' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAIError);
        assert.equal(err.status, 403);
        assert.equal(err.code, 'byok_not_allowed');
        return true;
      },
    );
    // Unmetered pass-through routes are refused the same way.
    const tokens = await fetch(`${tb.url}/anthropic/v1/messages/count_tokens`, {
      method: 'POST',
      headers: {
        'x-aibridge-key': outsider.key,
        'x-api-key': UPSTREAM_KEY,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ model: 'claude-sonnet-4-6', messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.equal(tokens.status, 403);
    assert.equal(anthropic.requests.length, beforeA, 'nothing reached the Anthropic upstream');
    assert.equal(openai.requests.length, beforeO, 'nothing reached the OpenAI upstream');
  });

  it('an instance that signs its own requests (Bedrock) takes no credential of the user’s, even for an allowed team', async () => {
    const res = await fetch(`${tb.url}/bedrock/v1/messages`, {
      method: 'POST',
      headers: {
        'x-aibridge-key': platform.key,
        'x-api-key': UPSTREAM_KEY,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'x' }],
      }),
    });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { error: { type: string; message: string } };
    assert.equal(body.error.type, 'permission_error');
    assert.match(body.error.message, /"bedrock" signs its requests/);
  });

  it('the admin toggles a team through the API; GET says what decides it', async () => {
    const initial = await adminApi<{ allowed: boolean; source: string }>('GET', '/api/v1/teams/sales/byok');
    assert.deepEqual([initial.body.allowed, initial.body.source], [false, 'default']);
    const fromFile = await adminApi<{ allowed: boolean; source: string }>(
      'GET',
      '/api/v1/teams/platform/byok',
    );
    assert.deepEqual([fromFile.body.allowed, fromFile.body.source], [true, 'file']);
    const member = await tb.api('PUT', '/api/v1/teams/sales/byok', outsider.key, { allowed: true });
    assert.equal(member.status, 403, 'members may not change it');
    const bad = await adminApi('PUT', '/api/v1/teams/sales/byok', { allowed: 'yes' });
    assert.equal(bad.status, 400);

    const put = await adminApi<{ team: string; allowed: boolean; source: string }>(
      'PUT',
      '/api/v1/teams/sales/byok',
      { allowed: true },
    );
    assert.equal(put.status, 200);
    assert.deepEqual([put.body.team, put.body.allowed, put.body.source], ['sales', true, 'admin']);
    const before = anthropic.messageRequests().length;
    const msg = await anthropicFor(outsider.key, { apiKey: UPSTREAM_KEY }).messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'Now allowed' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, MOCK_TEXT);
    assert.equal(anthropic.messageRequests()[before]?.headers.authorization, `Bearer ${UPSTREAM_KEY}`);

    // The admin's choice wins over the file, both ways.
    await adminApi('PUT', '/api/v1/teams/platform/byok', { allowed: false });
    await assert.rejects(
      anthropicFor(platform.key, { apiKey: UPSTREAM_KEY }).messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'Switched off' }],
      }),
      (err: unknown) => err instanceof APIError && err.status === 403,
    );
    await adminApi('PUT', '/api/v1/teams/platform/byok', { allowed: true });
    await adminApi('PUT', '/api/v1/teams/sales/byok', { allowed: false });
  });

  it('the real claude CLI: ANTHROPIC_CUSTOM_HEADERS carries the bridge key, ANTHROPIC_API_KEY stays the user’s own', async () => {
    const home = await tempDir('aibridge-byok-claude-');
    const env = claudeEnv({ bridgeUrl: tb.url, key: platform.key, home });
    delete env.ANTHROPIC_AUTH_TOKEN;
    env.ANTHROPIC_API_KEY = UPSTREAM_KEY;
    env.ANTHROPIC_CUSTOM_HEADERS = `X-AIBridge-Key: ${platform.key}`;
    const before = anthropic.messageRequests().length;
    const res = await run(CLAUDE, ['-p', 'Hello with my own key'], env, home);
    assert.equal(res.code, 0, `claude failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), MOCK_TEXT);
    const sent = anthropic.messageRequests().slice(before);
    assert.ok(sent.length >= 1, 'claude reached the upstream through the bridge');
    for (const s of sent) {
      assert.equal(s.headers['x-api-key'], UPSTREAM_KEY);
      assert.equal(s.headers['x-aibridge-key'], undefined, 'the bridge key stays at the bridge');
    }
    const recs = await tb.interceptions(1, platform.key);
    const mine = recs.find((r) => r.prompt === 'Hello with my own key');
    assert.ok(mine, `no record of the prompt: ${JSON.stringify(recs.map((r) => r.prompt))}`);
    assert.equal(mine.client, 'claude-code');
    assert.equal(mine.billedTo, 'user');
  });

  it("spend: the usage report shows the user's cost apart, and budgets are not charged with it", async () => {
    const budget = await adminApi<BudgetStatus>('PUT', '/api/v1/budgets', {
      scope: 'org',
      subject: '*',
      period: 'month',
      limitUsd: 1000,
      action: 'block',
    });
    assert.equal(budget.status, 200, JSON.stringify(budget.body));
    const splitUser = await tb.addUser('byok-split@example.com', { team: 'platform' });
    const beforeReport = (await adminApi<UsageReport>('GET', '/api/v1/usage?groupBy=user')).body;
    const own = await openaiFor(splitUser.key, OPENAI_UPSTREAM_KEY).chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'Paid by me' }],
    });
    assert.equal(own.choices[0]?.message.content, OPENAI_TEXT);
    const report = await eventually(async () => {
      await tb.bridge.recorder.drain();
      const r = (await adminApi<UsageReport>('GET', '/api/v1/usage?groupBy=user')).body;
      return r.totals.requests > beforeReport.totals.requests ? r : undefined;
    });
    const row = report.rows.find((r) => r.key === 'byok-split@example.com');
    assert.ok(row);
    assert.equal(row.requests, 1);
    assert.equal(row.userBilledRequests, 1);
    assert.ok(row.userBilledCostUsd > 0);
    assert.equal(row.costUsd, 0, "the organisation's cost leaves the user's out");
    const platformRow = report.rows.find((r) => r.key === 'byok-dev@example.com');
    assert.ok(platformRow && platformRow.userBilledCostUsd > 0 && platformRow.costUsd === 0);
    assert.ok(
      report.totals.userBilledCostUsd >= row.userBilledCostUsd + platformRow.userBilledCostUsd - 1e-9,
    );

    const status = await adminApi<BudgetStatus>('GET', `/api/v1/budgets/${budget.body.id}`);
    assert.equal(status.body.spentUsd, 0, 'the org budget is charged nothing for user-billed requests');
    assert.equal(status.body.reservedUsd, 0, 'and the reservation was released');
  });

  it('rate limits count requests sent with the user’s own key, in the API’s shape, before anything is forwarded', async () => {
    const limited = await tb.addUser('byok-rpm@example.com', { team: 'platform' });
    const put = await adminApi('PUT', '/api/v1/rate-limits', {
      scope: 'user',
      subject: limited.user.email,
      rpm: 1,
    });
    assert.equal(put.status, 200);
    const client = openaiFor(limited.key, OPENAI_UPSTREAM_KEY);
    const chat = { model: 'gpt-5', messages: [{ role: 'user' as const, content: 'one a minute' }] };
    await client.chat.completions.create(chat);
    const before = openai.requests.length;
    await assert.rejects(
      client.chat.completions.create(chat),
      (err: unknown) => err instanceof OpenAIError && err.status === 429,
    );
    assert.equal(openai.requests.length, before, 'the refused request never reached the upstream');
  });

  it("the user's credential is in no byte the bridge wrote: data dir, logs, admin API, live events", async () => {
    const list = await adminApi<unknown>('GET', '/api/v1/interceptions?limit=500');
    assert.equal(list.status, 200);
    await adminApi('GET', '/api/v1/usage?groupBy=model');
    await adminApi('GET', '/api/v1/audit/access-log');
    const exported = await fetch(`${tb.url}/api/v1/audit/export`, {
      headers: { authorization: `Bearer ${tb.adminKey}` },
    });
    apiBytes.push(await exported.text());
    await tb.bridge.recorder.drain();
    const secrets = [UPSTREAM_KEY, OPENAI_UPSTREAM_KEY, USER_OAUTH_TOKEN];
    const places: [string, string][] = [
      ['logs', tb.logs.join('')],
      ['admin API', apiBytes.join('\n')],
      ['live events', liveBytes.join('\n')],
    ];
    for (const f of await filesUnder(tb.dataDir)) places.push([f, await fs.readFile(f, 'latin1')]);
    assert.ok(
      liveBytes.length > 0 && tb.logs.length > 0 && places.length > 3,
      'there was something to search',
    );
    for (const [where, bytes] of places)
      for (const s of secrets) assert.ok(!bytes.includes(s), `${where} holds the user's credential`);
    // The records are there and say whose cost they were: the search covered them.
    assert.ok(apiBytes.join('').includes('"billedTo":"user"'));
  });
});

describe('bring your own key on two replicas sharing one PostgreSQL store', function () {
  this.timeout(90_000);
  let upstream: AnthropicMock;
  let a: TestBridge;
  let b: TestBridge;

  before(async () => {
    upstream = await new AnthropicMock().start();
    const env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('byok'),
      AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
      AIBRIDGE_ANTHROPIC_API_KEY: ORG_ANTHROPIC_KEY,
    };
    a = await startBridge(upstream.url, env);
    // The same data dir: the second replica reads the admin key the first one wrote there.
    b = await startBridge(upstream.url, env, a.dataDir);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await upstream.stop();
  });

  it('a team allowed on one replica is allowed on the other on its next requests, and switched off again', async () => {
    const dev = await a.addUser('byok-replica@example.com', { team: 'ops' });
    const ask = (tb: TestBridge) =>
      askMessages(tb.url, { 'x-aibridge-key': dev.key, 'x-api-key': UPSTREAM_KEY }, { max_tokens: 10 }).then(
        (r) => r.status,
      );
    assert.equal(await ask(b), 403);
    assert.equal((await a.api('PUT', '/api/v1/teams/ops/byok', a.adminKey, { allowed: true })).status, 200);
    await eventually(async () => ((await ask(b)) === 200 ? true : undefined), {
      what: 'B to allow what A allowed',
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const view = await b.api<{ allowed: boolean; source: string }>(
      'GET',
      '/api/v1/teams/ops/byok',
      b.adminKey,
    );
    assert.deepEqual([view.body.allowed, view.body.source], [true, 'admin']);
    assert.equal((await a.api('PUT', '/api/v1/teams/ops/byok', a.adminKey, { allowed: false })).status, 200);
    await eventually(async () => ((await ask(b)) === 403 ? true : undefined), {
      what: 'B to refuse again',
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const recs = await b.interceptions(1);
    const served = recs.find((r) => r.userEmail === 'byok-replica@example.com' && r.status === 'ok');
    assert.equal(served?.billedTo, 'user', 'the record written through B says who paid, in PostgreSQL');
  });

  it("a user-billed request admitted on a budget lease charges none of the team's budget", async () => {
    const dev = await a.addUser('byok-lease@example.com', { team: 'leased' });
    assert.equal(
      (await a.api('PUT', '/api/v1/teams/leased/byok', a.adminKey, { allowed: true })).status,
      200,
    );
    const put = await a.api<BudgetStatus>('PUT', '/api/v1/budgets', a.adminKey, {
      scope: 'team',
      subject: 'leased',
      period: 'month',
      limitUsd: 100,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const { status } = await askMessages(
      a.url,
      { 'x-aibridge-key': dev.key, 'x-api-key': UPSTREAM_KEY },
      { max_tokens: 10, prompt: 'paid by me' },
    );
    assert.equal(status, 200);
    await a.bridge.recorder.drain();
    const rec = (await a.interceptions(1, dev.key))[0];
    assert.equal(rec?.billedTo, 'user');
    assert.ok((rec?.costUsd ?? 0) > 0);
    // Every lease goes back (idle within two renewal ticks): what is left on the ledger is what was charged.
    const settled = await eventually(
      async () => {
        const s = await a.api<BudgetStatus>('GET', `/api/v1/budgets/${put.body.id}`, a.adminKey);
        return s.body.reservedUsd === 0 ? s.body : undefined;
      },
      { what: 'the lease to be returned', timeoutMs: 10_000, intervalMs: 100 },
    );
    assert.equal(settled.spentUsd, 0, "the team's budget is charged nothing for a user-billed request");
  });
});

describe('the providers file’s byok entry', () => {
  const load = async (json: unknown) => {
    const dir = await tempDir('aibridge-byok-file-');
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(file, JSON.stringify(json));
    return loadConfig({ 'data-dir': dir }, { AIBRIDGE_PROVIDERS_FILE: file });
  };

  it('reads the teams, "*" included; none without it', async () => {
    assert.deepEqual((await load({ providers: {}, byok: { teams: ['platform', '*'] } })).byok.teams, [
      'platform',
      '*',
    ]);
    assert.deepEqual((await load({ providers: {} })).byok.teams, []);
  });

  it('refuses a malformed entry at start, naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ providers: {}, byok: ['platform'] }, /AIBRIDGE_PROVIDERS_FILE.*byok: expected \{"teams"/],
      [{ providers: {}, byok: { teams: 'platform' } }, /byok\.teams: expected team names/],
      [{ providers: {}, byok: { teams: [''] } }, /byok\.teams: expected team names/],
      [{ providers: {}, byok: { teams: [], users: [] } }, /byok\.users: unknown field/],
    ];
    for (const [json, want] of cases) await assert.rejects(load(json), want);
  });
});

describe('ownCredential (unit)', () => {
  const bridgeKey = `aib_${'k'.repeat(43)}`;

  it('is the provider auth headers only beside X-AIBridge-Key', () => {
    assert.equal(ownCredential({ 'x-api-key': 'sk-ant-own' }), undefined);
    assert.equal(ownCredential({ 'x-aibridge-key': '  ', 'x-api-key': 'sk-ant-own' }), undefined);
    assert.deepEqual(ownCredential({ 'x-aibridge-key': bridgeKey, 'x-api-key': 'sk-ant-own' }), {
      'x-api-key': 'sk-ant-own',
    });
    assert.deepEqual(
      ownCredential({ 'x-aibridge-key': bridgeKey, authorization: 'Bearer sk-ant-oat01-x', 'api-key': 'az' }),
      { authorization: 'Bearer sk-ant-oat01-x', 'api-key': 'az' },
    );
    assert.equal(
      ownCredential({ 'x-aibridge-key': bridgeKey }),
      undefined,
      'the bridge key alone: organisation',
    );
  });

  it('never takes a bridge key (the same one, or any aib_ key) for the user’s own', () => {
    assert.equal(
      ownCredential({ 'x-aibridge-key': bridgeKey, authorization: `Bearer ${bridgeKey}` }),
      undefined,
    );
    assert.equal(
      ownCredential({ 'x-aibridge-key': bridgeKey, 'x-api-key': `aib_${'o'.repeat(43)}` }),
      undefined,
    );
  });
});
