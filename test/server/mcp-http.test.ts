import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { BridgeEvent } from '../../shared/protocol';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { AuthGate, OAuthGate, startEverythingHttp } from '../helpers/mcp-servers';
import { ECHO, ToolModelMock } from '../helpers/tool-model-mock';

const KEY = randomBytes(32).toString('base64');
const ALICE_TOKEN = `alice-secret-${randomBytes(8).toString('hex')}`;
const SHARED_SECRET = `shared-secret-${randomBytes(8).toString('hex')}`;

describe('MCP over streamable HTTP with per-user credentials', function () {
  this.timeout(60_000);
  let everything: { url: string; stop(): Promise<void> };
  let gate: AuthGate;
  let oauth: OAuthGate;
  let mock: ToolModelMock;
  let tb: TestBridge;
  let alice: { key: string; user: { id: string } };
  let bob: { key: string; user: { id: string } };
  const events: BridgeEvent[] = [];

  before(async () => {
    everything = await startEverythingHttp();
    gate = await new AuthGate(everything.url).start();
    gate.tokens.add(ALICE_TOKEN);
    gate.tokens.add(SHARED_SECRET);
    oauth = await new OAuthGate(everything.url).start();
    mock = await new ToolModelMock().start();
    tb = await startBridge(mock.url, {
      AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1`,
      AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
    });
    tb.bridge.bus.subscribe((e) => events.push(e));
    alice = await tb.addUser('alice@example.com', { team: 'a' });
    bob = await tb.addUser('bob@example.com', { team: 'b' });
  });
  after(async () => {
    await tb.close();
    await mock.stop();
    await gate.stop();
    await oauth.stop();
    await everything.stop();
  });

  function offered(i: number): string[] {
    return mock.requests[i]!.view.injected;
  }

  it('admins define a per-user server; members cannot', async () => {
    const body = {
      description: 'The reference server, behind a token check',
      transport: { type: 'http', url: gate.url },
      tools: { allow: ['echo', 'get-sum'] },
      auth: { type: 'per_user' },
    };
    const denied = await tb.api('PUT', '/api/v1/mcp/servers/everything', alice.key, body);
    assert.equal(denied.status, 403);
    const res = await tb.api<{ name: string; status: { state: string } }>(
      'PUT',
      '/api/v1/mcp/servers/everything',
      tb.adminKey,
      body,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status.state, 'per_user');
    const bad = await tb.api<{ error: { code: string } }>(
      'PUT',
      '/api/v1/mcp/servers/Bad_Name',
      tb.adminKey,
      body,
    );
    assert.equal(bad.status, 400);
    const stdio = await tb.api<{ error: { message: string } }>(
      'PUT',
      '/api/v1/mcp/servers/local',
      tb.adminKey,
      {
        transport: { type: 'stdio', command: 'sh' },
      },
    );
    assert.equal(stdio.status, 400);
    assert.match(stdio.body.error.message, /AIBRIDGE_MCP_API_STDIO/);
  });

  it('a user without credentials simply gets no tools', async () => {
    const client = new Anthropic({ apiKey: bob.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const seen = mock.requests.length;
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, 'No tools needed.');
    assert.deepEqual(offered(seen), []);
    assert.equal(
      mock.requests[seen]!.body.tools,
      undefined,
      'the request went upstream as the client sent it',
    );
  });

  it('a user stores their token; the server receives it, the store holds it only sealed', async () => {
    const put = await tb.api('PUT', '/api/v1/me/mcp/everything/credentials', alice.key, {
      token: ALICE_TOKEN,
    });
    assert.equal(put.status, 204);
    const me = await tb.api<{ items: { name: string; credential: { kind: string } | null }[] }>(
      'GET',
      '/api/v1/me/mcp',
      alice.key,
    );
    assert.equal(me.body.items.find((s) => s.name === 'everything')?.credential?.kind, 'token');

    const client = new OpenAI({ apiKey: alice.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    const seen = mock.requests.length;
    const res = await client.responses.create({ model: 'gpt-5', input: 'echo it' });
    assert.equal(res.output_text, 'Let me check.Tool said: Echo: hello from the model');
    assert.ok(offered(seen).includes(ECHO));
    assert.ok(gate.seen.includes(ALICE_TOKEN));

    const docs = await tb.bridge.store.listDocs('mcp_credential');
    assert.equal(docs.length, 1);
    assert.ok(!JSON.stringify(docs).includes(ALICE_TOKEN), 'the token is sealed at rest');
    const files = await fs.readdir(tb.dataDir, { recursive: true });
    for (const f of files) {
      const p = path.join(tb.dataDir, String(f));
      if ((await fs.stat(p)).isFile())
        assert.ok(!(await fs.readFile(p, 'utf8')).includes(ALICE_TOKEN), `the token is in ${f}`);
    }
    assert.ok(!tb.logs.join('').includes(ALICE_TOKEN), 'the token is never logged');
    for (const r of mock.requests)
      assert.ok(!JSON.stringify(r.body).includes(ALICE_TOKEN), 'never sent to the LLM');
  });

  it('a token the server refuses leaves the tools out, with a warning to that user', async () => {
    const put = await tb.api('PUT', '/api/v1/me/mcp/everything/credentials', bob.key, { token: 'wrong' });
    assert.equal(put.status, 204);
    const client = new OpenAI({ apiKey: bob.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
    const seen = mock.requests.length;
    const res = await client.chat.completions.create({
      model: 'gpt-5',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.choices[0]?.message.content, 'No tools needed.');
    assert.deepEqual(offered(seen), []);
    const warning = events.find((e) => e.type === 'mcp.warning' && e.server === 'everything');
    assert.ok(warning, 'a warning event');
    await tb.api('DELETE', '/api/v1/me/mcp/everything/credentials', bob.key);
    assert.equal((await tb.bridge.store.listDocs('mcp_credential')).length, 1);
  });

  it('a shared secret is sealed too, and never shown again', async () => {
    const res = await tb.api<{ auth: Record<string, unknown>; status: { state: string; tools: string[] } }>(
      'PUT',
      '/api/v1/mcp/servers/shared',
      tb.adminKey,
      {
        transport: { type: 'http', url: gate.url },
        tools: { allow: ['get-sum'] },
        auth: { type: 'secret', value: SHARED_SECRET },
      },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status.state, 'ready');
    assert.deepEqual(res.body.status.tools, ['get-sum']);
    assert.equal(res.body.auth.hasSecret, true);
    assert.ok(!JSON.stringify(res.body).includes(SHARED_SECRET));
    assert.ok(!JSON.stringify(await tb.bridge.store.listDocs('mcp_server')).includes(SHARED_SECRET));

    // Bob has no credential of his own, but everyone gets the shared server's tools.
    const client = new Anthropic({ apiKey: bob.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: v.results[0]!.text }
        : { calls: [{ name: 'aibridge__shared__get-sum', input: { a: 2, b: 3 } }] };
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'add' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, 'The sum of 2 and 3 is 5.');

    const del = await tb.api('DELETE', '/api/v1/mcp/servers/shared', tb.adminKey);
    assert.equal(del.status, 204);
    assert.equal((await tb.api('GET', '/api/v1/mcp/servers/shared', tb.adminKey)).status, 404);
  });

  it('runs the OAuth 2.1 authorisation for a user, and refreshes the token when it expires', async () => {
    const put = await tb.api('PUT', '/api/v1/mcp/servers/oauthed', tb.adminKey, {
      transport: { type: 'http', url: oauth.url },
      tools: { allow: ['echo'] },
      auth: { type: 'per_user', oauth: {} },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const started = await tb.api<{ authorizationUrl: string }>(
      'POST',
      '/api/v1/me/mcp/oauthed/oauth',
      alice.key,
      {},
    );
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.ok(started.body.authorizationUrl.startsWith(`${oauth.origin}/authorize?`));
    // The user's browser: the server approves and sends it back to the bridge with a code.
    const approved = await fetch(started.body.authorizationUrl, { redirect: 'manual' });
    const back = approved.headers.get('location') ?? '';
    assert.ok(back.startsWith(`${tb.url}/api/v1/mcp/oauth/callback?`), back);
    // The browser lands on a page that names the account; nothing is connected until it is confirmed.
    const confirm = await fetch(back);
    assert.equal(confirm.status, 200);
    // The confirmation is what stops a member connecting a colleague's account: never framed.
    assert.equal(confirm.headers.get('x-frame-options'), 'DENY');
    assert.match(confirm.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(confirm.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(confirm.headers.get('content-type'), 'text/html; charset=utf-8');
    const html = await confirm.text();
    assert.match(html, /Connect oauthed to alice@example\.com\?/);
    const pending = await tb.api<{ items: { name: string; credential: { authorized: boolean } | null }[] }>(
      'GET',
      '/api/v1/me/mcp',
      alice.key,
    );
    assert.notEqual(pending.body.items.find((s) => s.name === 'oauthed')?.credential?.authorized, true);
    const field = (n: string): string =>
      (new RegExp(`name="${n}" value="([^"]*)"`).exec(html)?.[1] ?? '').replaceAll('&amp;', '&');
    const form = new URLSearchParams({ state: field('state'), code: field('code') });
    const post = (): Promise<Response> =>
      fetch(`${tb.url}/api/v1/mcp/oauth/callback`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form,
      });
    const done = await post();
    assert.equal(done.status, 200);
    assert.match(await done.text(), /Connected/);
    assert.equal((await fetch(back)).status, 400, 'a state works once');
    assert.equal((await post()).status, 400, 'and is confirmed once');
    const me = await tb.api<{
      items: { name: string; credential: { kind: string; authorized: boolean } | null }[];
    }>('GET', '/api/v1/me/mcp', alice.key);
    const cred = me.body.items.find((s) => s.name === 'oauthed')?.credential;
    assert.equal(cred?.kind, 'oauth');
    assert.equal(cred?.authorized, true);

    mock.brain = (v) =>
      v.results.length > 0
        ? { text: v.results[0]!.text }
        : { calls: [{ name: 'aibridge__oauthed__echo', input: { message: 'via oauth' } }] };
    const client = new Anthropic({ apiKey: alice.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const ask = async (): Promise<string> => {
      const msg = await client.messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'echo' }],
      });
      return (msg.content[0] as { text: string }).text;
    };
    assert.equal(await ask(), 'Echo: via oauth');
    assert.deepEqual(oauth.grants, ['authorization_code']);
    oauth.expireAccessTokens();
    assert.equal(await ask(), 'Echo: via oauth');
    assert.ok(oauth.grants.includes('refresh_token'), `grants: ${oauth.grants.join(', ')}`);
    const sealed = JSON.stringify(await tb.bridge.store.listDocs('mcp_credential'));
    assert.ok(!/at_|rt_/.test(sealed), 'tokens are sealed at rest');
  });

  /** POST with a Host header of the sender's choosing (fetch does not let one be set). */
  function postWithHost(
    base: string,
    route: string,
    key: string,
    host: string,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${base}${route}`, {
        method: 'POST',
        headers: { host, 'x-api-key': key, 'content-type': 'application/json', 'content-length': 2 },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end('{}');
    });
  }

  it('an authorisation under way when its user is deactivated connects nothing when confirmed', async () => {
    const put = await tb.api('PUT', '/api/v1/mcp/servers/oauthed-leaver', tb.adminKey, {
      transport: { type: 'http', url: oauth.url },
      auth: { type: 'per_user', oauth: {} },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const leaver = await tb.addUser('leaver@example.com');
    const started = await tb.api<{ authorizationUrl: string }>(
      'POST',
      '/api/v1/me/mcp/oauthed-leaver/oauth',
      leaver.key,
      {},
    );
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const back = (await fetch(started.body.authorizationUrl, { redirect: 'manual' })).headers.get(
      'location',
    )!;
    const html = await (await fetch(back)).text();
    const field = (n: string): string =>
      (new RegExp(`name="${n}" value="([^"]*)"`).exec(html)?.[1] ?? '').replaceAll('&amp;', '&');
    // The identity provider deactivates the user while the browser sits on the confirmation page.
    await tb.bridge.store.updateUser(leaver.user.id, { deactivatedAt: new Date().toISOString() });
    const done = await fetch(`${tb.url}/api/v1/mcp/oauth/callback`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ state: field('state'), code: field('code') }),
    });
    assert.equal(done.status, 409);
    const view = tb.bridge.mcp.userView(leaver.user.id).find((v) => v.name === 'oauthed-leaver') as
      | { credential: { authorized: boolean } | null }
      | undefined;
    assert.notEqual(view?.credential?.authorized, true, 'no tokens stored for the deactivated user');
    assert.equal((await tb.api('DELETE', '/api/v1/mcp/servers/oauthed-leaver', tb.adminKey)).status, 204);
  });

  it('a per-user OAuth start never takes its redirect address from a Host header the member chose', async () => {
    const put = await tb.api('PUT', '/api/v1/mcp/servers/oauthed-host', tb.adminKey, {
      transport: { type: 'http', url: oauth.url },
      auth: { type: 'per_user', oauth: {} },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    // Without AIBRIDGE_PUBLIC_URL: a colleague approving this link would have their code sent to
    // the member's host, so it is not started.
    const forged = await postWithHost(
      tb.url,
      '/api/v1/me/mcp/oauthed-host/oauth',
      bob.key,
      'attacker.example',
    );
    assert.equal(forged.status, 503, forged.body);
    assert.match(forged.body, /mcp_oauth_needs_public_url/);
    assert.doesNotMatch(forged.body, /attacker\.example/);
    // A loopback name is the browser's own machine: served, as the test bridges are.
    const local = await postWithHost(
      tb.url,
      '/api/v1/me/mcp/oauthed-host/oauth',
      bob.key,
      `localhost:${new URL(tb.url).port}`,
    );
    assert.equal(local.status, 200, local.body);

    // With AIBRIDGE_PUBLIC_URL the redirect is always that address, whatever Host says.
    const pub = await startBridge(mock.url, {
      AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
      AIBRIDGE_PUBLIC_URL: 'https://bridge.example.com',
    });
    try {
      assert.equal(
        (
          await pub.api('PUT', '/api/v1/mcp/servers/oauthed-host', pub.adminKey, {
            transport: { type: 'http', url: oauth.url },
            auth: { type: 'per_user', oauth: {} },
          })
        ).status,
        200,
      );
      const { key } = await pub.addUser('carol@example.com');
      const started = await postWithHost(
        pub.url,
        '/api/v1/me/mcp/oauthed-host/oauth',
        key,
        'attacker.example',
      );
      assert.equal(started.status, 200, started.body);
      const link = new URL((JSON.parse(started.body) as { authorizationUrl: string }).authorizationUrl);
      assert.equal(
        link.searchParams.get('redirect_uri'),
        'https://bridge.example.com/api/v1/mcp/oauth/callback',
      );
    } finally {
      await pub.close();
    }
  });
});
