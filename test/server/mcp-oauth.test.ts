import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { auth, type OAuthClientProvider, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { GatewayToolCall } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { eventually } from '../helpers/eventually';
import { everythingStdio } from '../helpers/mcp-servers';
import {
  CookieJar,
  type OpenIdProvider,
  type SsoBridge,
  startSsoSetUp,
  throughProvider,
  visit,
} from '../helpers/oidc';
import { sessionCookie } from '../helpers/session';

const KEY = randomBytes(32).toString('base64');
/** Nothing listens here: the test plays the browser and reads the code off the redirect. */
const REDIRECT = 'http://127.0.0.1:1/callback';

/** The SDK's OAuth client side, kept in memory as an MCP client application would keep it on disk. */
class MemoryProvider implements OAuthClientProvider {
  info: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  authorizationUrl: URL | undefined;
  constructor(readonly name = 'Test MCP client') {}
  get redirectUrl(): string {
    return REDIRECT;
  }
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.name,
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state(): string {
    return 'st-123';
  }
  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.info = info;
  }
  tokens(): OAuthTokens | undefined {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens): void {
    this.saved = tokens;
  }
  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(v: string): void {
    this.verifier = v;
  }
  codeVerifier(): string {
    return this.verifier;
  }
}

type Listed = GatewayToolCall & { via: string };

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('');
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

/**
 * The bridge as the OAuth 2.1 authorization server of its MCP gateway, driven by the official MCP
 * SDK client's own OAuth support (discovery, registration, PKCE, token, refresh); the test plays
 * the browser with an admin-page session cookie.
 */
describe('MCP gateway OAuth (the bridge as authorization server for /mcp)', function () {
  this.timeout(90_000);
  const clock = new TestClock();
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let alice: { key: string; keyId: string; user: { id: string; email: string } };
  let cookie = '';
  const clients: Client[] = [];

  /** The browser: the authorize redirect, the consent page, the approval; returns the client's redirect. */
  async function browse(url: URL, approve = true, as = cookie): Promise<URL> {
    const first = await fetch(url, { redirect: 'manual' });
    assert.equal(first.status, 302, await first.text());
    const consent = new URL(first.headers.get('location')!, tb.url);
    assert.equal(consent.pathname, '/oauth/consent');
    const page = await fetch(consent, { headers: { cookie: as } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src/);
    const handle = consent.searchParams.get('request')!;
    const seen = await fetch(`${tb.url}/api/v1/oauth/requests/${handle}`, { headers: { cookie: as } });
    assert.equal(seen.status, 200);
    const view = (await seen.json()) as { clientName: string; redirectUri: string; resource: string };
    assert.equal(view.resource, `${tb.url}/mcp`);
    const answered = await fetch(`${tb.url}/api/v1/oauth/requests/${handle}`, {
      method: 'POST',
      headers: { cookie: as, 'x-aibridge-csrf': '1', 'content-type': 'application/json', origin: tb.url },
      body: JSON.stringify({ approve }),
    });
    assert.equal(answered.status, 200, await answered.clone().text());
    return new URL(((await answered.json()) as { redirectTo: string }).redirectTo);
  }

  /** The whole dance as an MCP client application runs it: 401 → discovery → registration → browser → token → connected. */
  async function authorize(provider: MemoryProvider): Promise<Client> {
    const first = new Client({ name: 'oauth-agent', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), { authProvider: provider });
    await assert.rejects(first.connect(transport), UnauthorizedError);
    assert.ok(provider.authorizationUrl, 'the SDK asked to open the browser');
    const back = await browse(provider.authorizationUrl);
    assert.equal(back.searchParams.get('state'), 'st-123');
    assert.equal(back.searchParams.get('iss'), tb.url);
    await transport.finishAuth(back.searchParams.get('code')!);
    return connect(provider);
  }

  async function connect(provider: MemoryProvider): Promise<Client> {
    const client = new Client({ name: 'oauth-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), { authProvider: provider }),
    );
    clients.push(client);
    return client;
  }

  /** Registration and an authorization URL by hand, for the negative cases the SDK never sends. */
  async function registered(): Promise<{ clientId: string; url: (p: Record<string, string>) => URL }> {
    const res = await fetch(`${tb.url}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'hand',
        redirect_uris: [REDIRECT],
        token_endpoint_auth_method: 'none',
      }),
    });
    assert.equal(res.status, 201);
    const clientId = ((await res.json()) as { client_id: string }).client_id;
    return {
      clientId,
      url: (p) => {
        const u = new URL(`${tb.url}/oauth/authorize`);
        for (const [k, v] of Object.entries({
          response_type: 'code',
          client_id: clientId,
          redirect_uri: REDIRECT,
          state: 's',
          resource: `${tb.url}/mcp`,
          ...p,
        }))
          if (v !== '') u.searchParams.set(k, v);
        return u;
      },
    };
  }

  async function token(fields: Record<string, string>) {
    const res = await fetch(`${tb.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(
      upstream.url,
      // Trusted loopback proxy: a test may speak for other addresses with X-Forwarded-For.
      {
        AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
        AIBRIDGE_MCP_API_STDIO: 'true',
        AIBRIDGE_TRUSTED_PROXIES: '127.0.0.1',
        // Low enough that a test can fill a user's keys (the grants' bound is tested below it).
        AIBRIDGE_KEYS_PER_USER: '25',
      },
      undefined,
      { clock },
    );
    alice = await tb.addUser('oauth-alice@example.com', { team: 'a' });
    const put = await tb.api('PUT', '/api/v1/mcp/servers/everything', tb.adminKey, everythingStdio());
    assert.equal(put.status, 200, JSON.stringify(put.body));
    cookie = await sessionCookie(tb.url, alice.key);
  });

  // Each test starts a fresh minute of the per-address registration pace (tested on its own below).
  beforeEach(() => clock.advance(60_000));

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await tb.close();
    await upstream.stop();
  });

  it('publishes RFC 9728 and RFC 8414 metadata naming the bridge, S256 only', async () => {
    const prm = (await (await fetch(`${tb.url}/.well-known/oauth-protected-resource`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(prm.resource, `${tb.url}/mcp`);
    assert.deepEqual(prm.authorization_servers, [tb.url]);
    const as = (await (await fetch(`${tb.url}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(as.issuer, tb.url);
    assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
    assert.equal(as.registration_endpoint, `${tb.url}/oauth/register`);
    assert.deepEqual(as.token_endpoint_auth_methods_supported, ['none']);
    const res = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get('www-authenticate'),
      `Bearer resource_metadata="${tb.url}/.well-known/oauth-protected-resource"`,
    );
  });

  it('the SDK client authorizes itself end to end; its tools/call is audited as the user, via gateway', async () => {
    const provider = new MemoryProvider('Claude Code (test)');
    const client = await authorize(provider);
    assert.match(provider.saved!.access_token, /^aibo_/);
    assert.equal(provider.saved!.expires_in, 3600);
    assert.equal(
      (provider.info as { token_endpoint_auth_method?: string }).token_endpoint_auth_method,
      'none',
    );
    // Tokens are stored only as keyed hashes.
    const stored = JSON.stringify(await tb.bridge.store.listDocs('oauth_access_token'));
    assert.ok(!stored.includes(provider.saved!.access_token));
    assert.ok(
      !JSON.stringify(await tb.bridge.store.listDocs('oauth_grant')).includes(
        provider.saved!.refresh_token!.split('.')[1]!,
      ),
    );

    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('everything__echo'), names.join());
    const r = (await client.callTool({
      name: 'everything__echo',
      arguments: { message: 'via oauth' },
    })) as CallToolResult;
    assert.match(text(r), /via oauth/);
    const call = await eventually(async () => {
      const listed = await tb.api<{ items: Listed[] }>('GET', '/api/v1/tool-calls?via=gateway', tb.adminKey);
      return listed.body.items.find((c) => c.name === 'everything__echo');
    });
    assert.equal(call.userId, alice.user.id);
    assert.equal(call.via, 'gateway');
    // The grant's key is the user's to see (and revoke): named for the client.
    const keys = await tb.api<{ items: { name: string; id: string }[] } | { name: string; id: string }[]>(
      'GET',
      `/api/v1/users/${encodeURIComponent(alice.user.email)}/keys`,
      tb.adminKey,
    );
    const list = Array.isArray(keys.body) ? keys.body : keys.body.items;
    assert.ok(
      list.some((k) => k.name === 'MCP gateway OAuth: Claude Code (test)'),
      JSON.stringify(list),
    );
  });

  it('the access token works only at /mcp: refused at the provider routes and the admin API', async () => {
    const provider = new MemoryProvider();
    await authorize(provider);
    const bearer = { authorization: `Bearer ${provider.saved!.access_token}` };
    const anthropic = await askMessages(tb.url, bearer, { model: 'claude-sonnet-4-5', max_tokens: 5 });
    assert.equal(anthropic.status, 401);
    const xApiKey = await fetch(`${tb.url}/anthropic/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': provider.saved!.access_token, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(xApiKey.status, 401);
    assert.equal((await tb.api('GET', '/api/v1/me', provider.saved!.access_token)).status, 401);
    assert.equal((await tb.api('GET', '/api/v1/tool-calls', provider.saved!.access_token)).status, 401);
    assert.equal(upstream.requests.length, 0);
  });

  it('refuses missing or wrong PKCE and a wrong resource', async () => {
    const h = await registered();
    const verifier = randomBytes(32).toString('base64url');
    // A refused request is a page, never a redirect: registration is open, so a redirect to the
    // client's URI on a bad request would make the bridge an open redirector for any site.
    const refusedWith = async (r: Response, code: string) => {
      assert.equal(r.status, 400);
      assert.equal(r.headers.get('location'), null);
      assert.match(await r.text(), new RegExp(`\\(${code}\\)`));
    };
    // No code_challenge: invalid_request.
    await refusedWith(await fetch(h.url({}), { redirect: 'manual' }), 'invalid_request');
    // plain is not offered.
    const plain = await fetch(h.url({ code_challenge: verifier, code_challenge_method: 'plain' }), {
      redirect: 'manual',
    });
    await refusedWith(plain, 'invalid_request');
    // Another resource (RFC 8707): invalid_target.
    for (const resource of ['https://elsewhere.example/mcp', `${tb.url}/anthropic`, '']) {
      const wrong = await fetch(
        h.url({ code_challenge: s256(verifier), code_challenge_method: 'S256', resource }),
        {
          redirect: 'manual',
        },
      );
      await refusedWith(wrong, 'invalid_target');
    }
    // An unregistered redirect URI is never redirected to.
    const evil = await fetch(
      h.url({
        code_challenge: s256(verifier),
        code_challenge_method: 'S256',
        redirect_uri: 'https://evil.example/cb',
      }),
      {
        redirect: 'manual',
      },
    );
    assert.equal(evil.status, 400);
    assert.equal(evil.headers.get('location'), null);

    // A good request, then the code with a wrong verifier, and with none.
    const code = async () => {
      const back = await browse(h.url({ code_challenge: s256(verifier), code_challenge_method: 'S256' }));
      return back.searchParams.get('code')!;
    };
    const wrong = await token({
      grant_type: 'authorization_code',
      client_id: h.clientId,
      code: await code(),
      redirect_uri: REDIRECT,
      code_verifier: randomBytes(32).toString('base64url'),
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'invalid_grant');
    const missing = await token({
      grant_type: 'authorization_code',
      client_id: h.clientId,
      code: await code(),
      redirect_uri: REDIRECT,
    });
    assert.equal(missing.body.error, 'invalid_request');
    // The right verifier works, once; a replayed code is refused.
    const good = await code();
    const ok = await token({
      grant_type: 'authorization_code',
      client_id: h.clientId,
      code: good,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
      resource: `${tb.url}/mcp`,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const again = await token({
      grant_type: 'authorization_code',
      client_id: h.clientId,
      code: good,
      redirect_uri: REDIRECT,
      code_verifier: verifier,
    });
    assert.equal(again.body.error, 'invalid_grant');
    // The replay ended the grant: the token it had given is dead too.
    const res = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${ok.body.access_token as string}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
  });

  it('one address starts at most 60 authorizations a minute and keeps at most 100 waiting (its own oldest makes room); when the 1000 are full the busiest address makes room: another address is still served', async () => {
    const h = await registered();
    const pending = async () => (await tb.bridge.store.listDocs('oauth_pending')).length;
    const ask = (from: string) =>
      fetch(
        h.url({
          code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
          code_challenge_method: 'S256',
        }),
        {
          redirect: 'manual',
          headers: { 'x-forwarded-for': from },
        },
      );
    const handleOf = (r: Response): string => {
      const at = new URL(r.headers.get('location')!, tb.url);
      assert.equal(at.pathname, '/oauth/consent', `served, not ${r.headers.get('location')}`);
      return at.searchParams.get('request')!;
    };
    const waiting = async (handle: string) =>
      (await fetch(`${tb.url}/api/v1/oauth/requests/${handle}`, { headers: { cookie } })).status === 200;
    // Ten IPv6 /64s, each through several of its addresses (a host has its whole /64 to rotate through).
    const fromNet = (net: number, n: number) => ask(`2001:db8:7:${net}::${(n % 50).toString(16)}`);
    const base = await pending();
    const first = handleOf(await ask('203.0.113.7'));
    const netZeroFirst = handleOf(await fromNet(0, 0));
    for (let i = 1; i < 60; i++) handleOf(await fromNet(0, i));
    // The 61st start of a minute from one /64 is refused with a page, nothing kept.
    const refused = await fromNet(0, 60);
    assert.equal(refused.status, 400);
    assert.equal(refused.headers.get('location'), null);
    assert.match(await refused.text(), /\(temporarily_unavailable\)/);
    assert.equal(await pending(), base + 61, 'nothing stored for the refused start');
    for (let net = 1; net < 10; net++) for (let i = 0; i < 50; i++) handleOf(await fromNet(net, i));
    // A minute later the /64 is served again: a loop is held back for a minute, not locked out.
    clock.advance(61_000);
    for (let i = 60; i < 100; i++) handleOf(await fromNet(0, i));
    assert.ok(await waiting(netZeroFirst));
    handleOf(await fromNet(0, 100));
    assert.equal(await waiting(netZeroFirst), false, 'its 101st replaced its own oldest');
    assert.equal(await pending(), base + 1 + 100 + 450);
    // The other /64s fill the 1000: then the busiest address's oldest makes room, never everyone's.
    for (let net = 1; net < 10; net++) for (let i = 50; i < 100; i++) handleOf(await fromNet(net, i));
    assert.equal(await pending(), 1000);
    const other = handleOf(await ask('198.51.100.9'));
    assert.ok(await waiting(other), 'its request is there to answer');
    assert.ok(await waiting(first), 'the lone earlier request from another address is kept');
  });

  it('paces client registrations per address: the 31st within a minute is 429 with retry-after, the next minute is served', async () => {
    const reg = () =>
      fetch(`${tb.url}/oauth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          client_name: 'pace',
          redirect_uris: [REDIRECT],
          token_endpoint_auth_method: 'none',
        }),
      });
    for (let i = 0; i < 30; i++) assert.equal((await reg()).status, 201, `registration ${i + 1}`);
    const refused = await reg();
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { error: string }).error, 'temporarily_unavailable');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    clock.advance(60_000);
    assert.equal((await reg()).status, 201);
  });

  it('registration refuses confidential clients and redirect URIs a browser would execute or another app could claim', async () => {
    const reg = async (body: unknown) =>
      fetch(`${tb.url}/oauth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (const uri of [
      'javascript:alert(1)',
      'data:text/html,x',
      'http://evil.example/cb',
      'myapp://cb',
      'https://a.example/cb#f',
    ])
      assert.equal((await reg({ redirect_uris: [uri] })).status, 400, uri);
    const secret = await reg({
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: 'client_secret_basic',
    });
    assert.equal(((await secret.json()) as { error: string }).error, 'invalid_client_metadata');
    assert.equal(
      (await reg({ redirect_uris: ['https://vscode.dev/redirect', 'http://[::1]:33418/'] })).status,
      201,
    );
  });

  it('accepts a registered loopback redirect URI on another port (RFC 8252), nothing else that differs', async () => {
    const h = await registered();
    const pkce = { code_challenge: s256('v'.repeat(43)), code_challenge_method: 'S256' };
    const other = await fetch(h.url({ ...pkce, redirect_uri: 'http://127.0.0.1:54321/callback' }), {
      redirect: 'manual',
    });
    assert.equal(other.status, 302);
    assert.match(other.headers.get('location')!, /^\/oauth\/consent\?request=/);
    for (const uri of [
      'http://127.0.0.1:54321/elsewhere',
      'http://localhost:1/callback',
      'https://127.0.0.1:1/callback',
    ]) {
      const refused = await fetch(h.url({ ...pkce, redirect_uri: uri }), { redirect: 'manual' });
      assert.equal(refused.status, 400, uri);
      assert.equal(refused.headers.get('location'), null);
    }
  });

  it('a denial goes back as access_denied', async () => {
    const h = await registered();
    const back = await browse(
      h.url({ code_challenge: s256('x'.repeat(43)), code_challenge_method: 'S256' }),
      false,
    );
    assert.equal(back.searchParams.get('error'), 'access_denied');
    assert.equal(back.searchParams.get('code'), null);
  });

  it('rotates refresh tokens: the new pair works, the spent refresh token is refused and ends the grant', async () => {
    const provider = new MemoryProvider();
    await authorize(provider);
    const first = provider.saved!;
    const clientId = provider.info!.client_id;
    // The access token expires in an hour; the SDK refreshes on the 401.
    clock.advance(3_600_001);
    const expired = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${first.access_token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(expired.status, 401);
    assert.equal(await auth(provider, { serverUrl: `${tb.url}/mcp` }), 'AUTHORIZED');
    const second = provider.saved!;
    assert.notEqual(second.refresh_token, first.refresh_token);
    const client = await connect(provider);
    assert.ok((await client.listTools()).tools.length > 0);
    // The first refresh token again: refused, and (reuse) the grant ends, second pair included.
    const reused = await token({
      grant_type: 'refresh_token',
      client_id: clientId,
      refresh_token: first.refresh_token!,
    });
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_grant');
    const after = await token({
      grant_type: 'refresh_token',
      client_id: clientId,
      refresh_token: second.refresh_token!,
    });
    assert.equal(after.body.error, 'invalid_grant');
    const dead = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${second.access_token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(dead.status, 401);
  });

  it("a revoked grant key or a deactivated user's token is refused at once", async () => {
    const bobUser = await tb.addUser('oauth-bob@example.com', { team: 'a' });
    const bobCookie = await sessionCookie(tb.url, bobUser.key);
    const provider = new MemoryProvider('bob client');
    const first = new Client({ name: 'x', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), { authProvider: provider });
    await assert.rejects(first.connect(transport), UnauthorizedError);
    const back = await browse(provider.authorizationUrl!, true, bobCookie);
    await transport.finishAuth(back.searchParams.get('code')!);
    const client = await connect(provider);
    assert.ok((await client.listTools()).tools.length > 0);
    const post = () =>
      fetch(`${tb.url}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${provider.saved!.access_token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
    assert.equal((await post()).status, 200);
    await tb.bridge.store.updateUser(bobUser.user.id, { deactivatedAt: new Date(clock.now()).toISOString() });
    const refused = await post();
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'user_deactivated');
    // And refreshing does not bring it back.
    const again = await token({
      grant_type: 'refresh_token',
      client_id: provider.info!.client_id,
      refresh_token: provider.saved!.refresh_token!,
    });
    assert.equal(again.body.error, 'invalid_grant');
  });

  it('authorizing the same client again replaces the earlier grant (its tokens and key end)', async () => {
    const provider = new MemoryProvider('again');
    await authorize(provider);
    const first = provider.saved!;
    // The client lost its tokens: the SDK starts a new authorization with the same registration.
    provider.saved = undefined;
    provider.authorizationUrl = undefined;
    assert.equal(await auth(provider, { serverUrl: `${tb.url}/mcp` }), 'REDIRECT');
    const back = await browse(provider.authorizationUrl!);
    assert.equal(
      await auth(provider, { serverUrl: `${tb.url}/mcp`, authorizationCode: back.searchParams.get('code')! }),
      'AUTHORIZED',
    );
    assert.notEqual(provider.saved!.access_token, first.access_token);
    const old = await token({
      grant_type: 'refresh_token',
      client_id: provider.info!.client_id,
      refresh_token: first.refresh_token!,
    });
    assert.equal(old.body.error, 'invalid_grant');
    const keys = await tb.api<
      { name: string; revokedAt: string | null }[] | { items: { name: string; revokedAt: string | null }[] }
    >('GET', `/api/v1/users/${encodeURIComponent(alice.user.email)}/keys`, tb.adminKey);
    const list = (Array.isArray(keys.body) ? keys.body : keys.body.items).filter(
      (k) => k.name === 'MCP gateway OAuth: again',
    );
    assert.equal(list.length, 2);
    assert.equal(list.filter((k) => k.revokedAt === null).length, 1, 'only the newest grant key is live');
    const client = await connect(provider);
    assert.ok((await client.listTools()).tools.length > 0);
  });

  /** A client registered by hand and approved in the admin-page session `as`: its id and the answer's status. */
  async function approve(as: string): Promise<{ clientId: string; status: number }> {
    const h = await registered();
    const verifier = randomBytes(32).toString('base64url');
    const first = await fetch(h.url({ code_challenge: s256(verifier), code_challenge_method: 'S256' }), {
      redirect: 'manual',
    });
    const handle = new URL(first.headers.get('location')!, tb.url).searchParams.get('request')!;
    const answered = await fetch(`${tb.url}/api/v1/oauth/requests/${handle}`, {
      method: 'POST',
      headers: { cookie: as, 'x-aibridge-csrf': '1', 'content-type': 'application/json', origin: tb.url },
      body: JSON.stringify({ approve: true }),
    });
    return { clientId: h.clientId, status: answered.status };
  }

  it('a user holds at most 20 grants (the oldest ends, and its client is forgotten a day on); a refused key approves nothing', async () => {
    // A member registering and approving clients of their own in a loop grew the store by every
    // client's metadata, for good: approved clients were never forgotten.
    const carol = await tb.addUser('oauth-carol@example.com', { team: 'a' });
    const carolCookie = await sessionCookie(tb.url, carol.key);
    const grantsOf = async (userId: string) =>
      (await tb.bridge.store.listDocs<{ userId: string; clientId: string }>('oauth_grant')).filter(
        (g) => g.userId === userId,
      );
    const clientIds = async () =>
      new Set((await tb.bridge.store.listDocs<{ id: string }>('oauth_client')).map((c) => c.id));
    const ids: string[] = [];
    for (let i = 0; i < 21; i++) {
      clock.advance(1_000);
      const r = await approve(carolCookie);
      assert.equal(r.status, 200);
      ids.push(r.clientId);
    }
    const held = await grantsOf(carol.user.id);
    assert.equal(held.length, 20);
    assert.ok(!held.some((g) => g.clientId === ids[0]), 'the oldest grant ended');
    // Its client, no grant left, is kept as one never approved: a day from its registration.
    assert.ok((await clientIds()).has(ids[0]!));
    clock.advance(86_400_000);
    await registered();
    const known = await clientIds();
    assert.equal(known.has(ids[0]!), false, 'the client no grant refers to is forgotten');
    assert.ok(known.has(ids[20]!) && known.has(ids[1]!), 'clients with grants stay, however old');
    // The day outlived the tests' admin-page session: a new one for the tests after this one.
    cookie = await sessionCookie(tb.url, alice.key);

    // A user whose keys are all live: the key is refused, and the client stays unapproved.
    const dave = await tb.addUser('oauth-dave@example.com', { team: 'a' });
    for (let i = 1; i < 25; i++) {
      const k = await tb.api(
        'POST',
        `/api/v1/users/${encodeURIComponent(dave.user.email)}/keys`,
        tb.adminKey,
        {},
      );
      assert.equal(k.status, 201, JSON.stringify(k.body));
    }
    clock.advance(60_000);
    const refused = await approve(await sessionCookie(tb.url, dave.key));
    assert.equal(refused.status, 409);
    const doc = await tb.bridge.store.getDoc<{ approvedAt: string | null }>('oauth_client', refused.clientId);
    assert.equal(doc?.approvedAt, null, 'nothing approved');
    assert.equal((await grantsOf(dave.user.id)).length, 0);
  });

  it("revoking the grant's key in the user's key list ends its tokens", async () => {
    const provider = new MemoryProvider('revoke me');
    await authorize(provider);
    const keys = await tb.api<{ id: string; name: string }[] | { items: { id: string; name: string }[] }>(
      'GET',
      `/api/v1/users/${encodeURIComponent(alice.user.email)}/keys`,
      tb.adminKey,
    );
    const list = Array.isArray(keys.body) ? keys.body : keys.body.items;
    const key = list.find((k) => k.name === 'MCP gateway OAuth: revoke me')!;
    assert.ok(key);
    const revoked = await tb.api('DELETE', `/api/v1/keys/${key.id}`, tb.adminKey);
    assert.ok(revoked.status < 300, JSON.stringify(revoked.body));
    const res = await fetch(`${tb.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${provider.saved!.access_token}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    assert.equal(res.status, 401);
  });

  it('approved in a session opened with a device key, the grant ends where that key’s renewals do, not 90 days on', async () => {
    const erin = await tb.addUser('erin-oauth@example.com');
    const form = async (route: string, fields: Record<string, string>) =>
      (await (
        await fetch(tb.url + route, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(fields).toString(),
        })
      ).json()) as Record<string, string>;
    const started = await form('/api/v1/auth/device/code', { device_name: 'erin laptop' });
    const approved = await fetch(`${tb.url}/api/v1/auth/device/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${erin.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ userCode: started.user_code, approve: true }),
    });
    assert.equal(approved.status, 200);
    const token = await form('/api/v1/auth/device/token', {
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: started.device_code!,
    });
    const device = (await tb.bridge.store.listKeys(erin.user.id)).find((k) => k.id === token.key_id)!;
    assert.ok(device.renewableUntil, 'a device key, with its bound');
    const answered = await approve(await sessionCookie(tb.url, token.access_token!));
    assert.equal(answered.status, 200);
    const grant = (await tb.bridge.store.listDocs<{ userId: string; keyId: string }>('oauth_grant')).find(
      (g) => g.userId === erin.user.id,
    )!;
    const grantKey = (await tb.bridge.store.listKeys(erin.user.id)).find((k) => k.id === grant.keyId)!;
    assert.equal(grantKey.expiresAt, device.renewableUntil, '30 days from the sign-in, not 90 from now');
  });
});

describe('MCP gateway OAuth with single sign-on: the consent page signs the user in at the identity provider', function () {
  this.timeout(60_000);
  let idp: OpenIdProvider;
  let tb: SsoBridge;

  before(async () => {
    ({ idp, tb } = await startSsoSetUp(
      { 'sso-dev': { email: 'sso-dev@example.com', email_verified: true, groups: ['eng'] } },
      {
        AIBRIDGE_OIDC_SCOPES: 'openid email profile groups',
        AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
        AIBRIDGE_MCP_API_STDIO: 'true',
      },
    ));
    const put = await fetch(`${tb.url}/api/v1/mcp/servers/everything`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(everythingStdio()),
    });
    assert.equal(put.status, 200, await put.text());
  });
  after(async () => {
    await tb?.close();
    await idp?.stop();
  });

  it('a browser with no session: consent → SSO login → back to consent → approve; the SDK client then calls a tool as that user', async () => {
    const provider = new MemoryProvider('sso client');
    const first = new Client({ name: 'sso-agent', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), { authProvider: provider });
    await assert.rejects(first.connect(transport), UnauthorizedError);

    const jar = new CookieJar();
    const toConsent = await visit(jar, provider.authorizationUrl!.href);
    assert.equal(toConsent.status, 302);
    const consent = toConsent.headers.get('location')!;
    // Not signed in: the page's API calls are refused, and the page offers the provider.
    assert.equal((await visit(jar, `${tb.url}/api/v1/me`)).status, 401);
    const config = (await (await fetch(`${tb.url}/api/v1/auth/config`)).json()) as {
      sso: { loginUrl: string };
    };
    // What the page's SSO link does: the login route, with the consent page to come back to.
    const login = await visit(jar, `${tb.url}${config.sso.loginUrl}?returnTo=${encodeURIComponent(consent)}`);
    assert.equal(login.status, 302);
    const callback = await throughProvider(
      jar,
      login.headers.get('location')!,
      'sso-dev',
      `${tb.url}/api/v1/auth/oidc/callback`,
    );
    const back = await visit(jar, callback);
    assert.equal(back.status, 302);
    assert.equal(back.headers.get('location'), consent);

    const handle = new URL(consent, tb.url).searchParams.get('request')!;
    const view = await visit(jar, `${tb.url}/api/v1/oauth/requests/${handle}`);
    assert.equal(view.status, 200);
    assert.equal(((await view.json()) as { clientName: string }).clientName, 'sso client');
    const answered = await visit(jar, `${tb.url}/api/v1/oauth/requests/${handle}`, {
      method: 'POST',
      headers: { 'x-aibridge-csrf': '1', 'content-type': 'application/json', origin: tb.url },
      body: JSON.stringify({ approve: true }),
    });
    assert.equal(answered.status, 200);
    const redirect = new URL(((await answered.json()) as { redirectTo: string }).redirectTo);
    await transport.finishAuth(redirect.searchParams.get('code')!);

    const client = new Client({ name: 'sso-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${tb.url}/mcp`), { authProvider: provider }),
    );
    try {
      const r = (await client.callTool({
        name: 'everything__echo',
        arguments: { message: 'sso' },
      })) as CallToolResult;
      assert.match(text(r), /sso/);
    } finally {
      await client.close();
    }
    const user = await tb.bridge.store.getUserByEmail('sso-dev@example.com');
    assert.ok(user);
    const call = await eventually(async () => {
      const res = await fetch(`${tb.url}/api/v1/tool-calls?via=gateway`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      });
      return ((await res.json()) as { items: Listed[] }).items.find((c) => c.name === 'everything__echo');
    });
    assert.equal(call.userId, user.id);
    assert.equal(call.via, 'gateway');
  });
});
