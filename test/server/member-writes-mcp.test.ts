import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MEMBER_WRITES_PER_MINUTE } from '../../server/identity/member-writes';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { OAuthGate, startEverythingHttp } from '../helpers/mcp-servers';

const KEY = randomBytes(32).toString('base64');
/** Nothing listens here: the test plays the browser and reads the code off the redirect. */
const REDIRECT = 'http://127.0.0.1:1/callback';

/**
 * Members' changes are paced wherever they are made (docs/api.md#member-writes), not only through
 * `/api`: a `<server>__connect` call on the MCP gateway starts an OAuth authorisation (stored, and
 * asked of the MCP server's authorisation server), and a refresh at `/oauth/token` rewrites the
 * grant and its token. Each is a rewrite of the embedded store's db.json on the event loop; looped
 * by one member, they held up every other request of the bridge.
 */
describe('members’ changes outside /api are paced too: MCP gateway connect calls, OAuth refreshes', function () {
  this.timeout(90_000);
  const clock = new TestClock();
  let upstream: AnthropicMock;
  let web: { url: string; stop(): Promise<void> };
  let gate: OAuthGate;
  let tb: TestBridge;
  const clients: Client[] = [];

  before(async () => {
    upstream = await new AnthropicMock().start();
    web = await startEverythingHttp();
    gate = await new OAuthGate(web.url).start();
    tb = await startBridge(upstream.url, { AIBRIDGE_MCP_CREDENTIALS_KEY: KEY }, undefined, { clock });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/wiki', tb.adminKey, {
      transport: { type: 'http', url: gate.url },
      tools: { allow: ['echo'] },
      auth: { type: 'per_user', oauth: {} },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  beforeEach(() => clock.advance(61_000));
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tb?.close();
    await gate?.stop();
    await web?.stop();
    await upstream?.stop();
  });

  /** Counts the store's document writes while `fn` runs. */
  async function docWrites(fn: () => Promise<void>): Promise<number> {
    const store = tb.bridge.store;
    const put = store.putDoc;
    const del = store.deleteDoc;
    let n = 0;
    store.putDoc = (...a) => {
      n++;
      return put.apply(store, a);
    };
    store.deleteDoc = (...a) => {
      n++;
      return del.apply(store, a);
    };
    try {
      await fn();
    } finally {
      store.putDoc = put;
      store.deleteDoc = del;
    }
    return n;
  }

  async function gatewayClient(key: string): Promise<Client> {
    const client = new Client({ name: 'looping-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${key}` } },
      }),
    );
    clients.push(client);
    return client;
  }

  const connectText = async (client: Client): Promise<string> => {
    const r = (await client.callTool({ name: 'wiki__connect', arguments: {} })) as CallToolResult;
    assert.equal(r.isError, true);
    return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
  };
  const linked = (text: string) => text.includes(`${gate.origin}/authorize?`);

  it('a member’s connect calls start at most 60 authorisations a minute; past that the result says why and nothing is stored or asked upstream', async () => {
    const looper = await tb.addUser('connect-looper@example.com');
    const other = await tb.addUser('connect-bystander@example.com');
    const client = await gatewayClient(looper.key);
    for (let i = 0; i < MEMBER_WRITES_PER_MINUTE; i++)
      assert.ok(linked(await connectText(client)), `call ${i}`);
    let text = '';
    const writes = await docWrites(async () => {
      text = await connectText(client);
    });
    assert.ok(!linked(text), text);
    assert.match(text, /More than 60 changes a minute from one user; retry in \d+ s\./);
    assert.match(text, /You have not connected wiki to AI Bridge yet/);
    assert.equal(writes, 0, 'nothing stored for the refused start');
    // The API's start shares the pace; another member is not paced by this one.
    const viaApi = await tb.api('POST', '/api/v1/me/mcp/wiki/oauth', looper.key);
    assert.equal(viaApi.status, 429);
    assert.ok(linked(await connectText(await gatewayClient(other.key))));

    clock.advance(61_000);
    assert.ok(linked(await connectText(client)), 'a minute later the link is given again');
  });

  /** Registration, the consent (the member's own approval) and the code exchange: the first tokens. */
  async function grantFor(
    key: string,
  ): Promise<{ clientId: string; refreshToken: string; accessToken: string }> {
    const reg = await fetch(`${tb.url}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'loop',
        redirect_uris: [REDIRECT],
        token_endpoint_auth_method: 'none',
      }),
    });
    const clientId = ((await reg.json()) as { client_id: string }).client_id;
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL(`${tb.url}/oauth/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT,
      resource: `${tb.url}/mcp`,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }))
      authorize.searchParams.set(k, v);
    const toConsent = await fetch(authorize, { redirect: 'manual' });
    const handle = new URL(toConsent.headers.get('location')!, tb.url).searchParams.get('request')!;
    const answered = await fetch(`${tb.url}/api/v1/oauth/requests/${handle}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'x-aibridge-csrf': '1', 'content-type': 'application/json' },
      body: JSON.stringify({ approve: true }),
    });
    assert.equal(answered.status, 200, await answered.clone().text());
    const code = new URL(((await answered.json()) as { redirectTo: string }).redirectTo).searchParams.get(
      'code',
    )!;
    const t = await token({
      grant_type: 'authorization_code',
      code,
      client_id: clientId,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
    });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    return { clientId, refreshToken: t.body.refresh_token!, accessToken: t.body.access_token! };
  }

  async function token(fields: Record<string, string>) {
    const res = await fetch(`${tb.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    return {
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: (await res.json()) as { refresh_token?: string; access_token?: string; error?: string },
    };
  }

  it('a member’s refreshes at /oauth/token are paced: the 61st in a minute is 429 temporarily_unavailable, its refresh token unspent', async () => {
    const looper = await tb.addUser('refresh-looper@example.com');
    const g = await grantFor(looper.key);
    clock.advance(61_000);
    let refresh = g.refreshToken;
    for (let i = 0; i < MEMBER_WRITES_PER_MINUTE; i++) {
      const t = await token({ grant_type: 'refresh_token', client_id: g.clientId, refresh_token: refresh });
      assert.equal(t.status, 200, `refresh ${i}: ${JSON.stringify(t.body)}`);
      refresh = t.body.refresh_token!;
    }
    let refused: Awaited<ReturnType<typeof token>> | undefined;
    const writes = await docWrites(async () => {
      refused = await token({ grant_type: 'refresh_token', client_id: g.clientId, refresh_token: refresh });
    });
    assert.equal(refused!.status, 429);
    assert.equal(refused!.body.error, 'temporarily_unavailable');
    assert.ok(Number(refused!.retryAfter) >= 1, `retry-after ${refused!.retryAfter}`);
    assert.equal(writes, 0, 'nothing written for the refused refresh');

    clock.advance(61_000);
    const later = await token({ grant_type: 'refresh_token', client_id: g.clientId, refresh_token: refresh });
    assert.equal(later.status, 200, 'the refused refresh token was not spent');
    const mcp = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${later.body.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(mcp.status, 200);
  });
});
