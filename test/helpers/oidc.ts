import { createHash, generateKeyPairSync, type KeyObject, randomBytes, randomUUID, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Provider, { type ProviderAccount } from 'oidc-provider';
import { type Bridge, type BuildOptions, buildApp } from '../../server/app';
import { bootstrapAdmin } from '../../server/bootstrap';
import { loadConfig } from '../../server/config';
import { tempDir } from './bridge';
import { freePort } from './loopback';

export const CLIENT_ID = 'aibridge-test';
export const CLIENT_SECRET = 'test-client-secret-0123456789';

/** A user of the test provider, logged in with their `login`. */
export interface IdpUser {
  email: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

async function listen(server: Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

async function stop(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * A real OpenID Provider (oidc-provider, OpenID-certified) on a free port, with its development
 * login and consent pages, the bridge registered as a client (PKCE required), and users with
 * groups. `rotateKeys()` replaces its signing key as a provider's key rotation does.
 */
export class OpenIdProvider {
  url = '';
  readonly users = new Map<string, IdpUser>();
  /** Every key id it has signed with, oldest first. */
  readonly kids: string[] = [];
  /** Requests the provider received, by path (the JWKS fetches are counted here). */
  readonly hits: string[] = [];
  private server: Server | undefined;
  private handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  constructor(
    private readonly redirectUri: string,
    private readonly opts: {
      clientSecret?: string | undefined;
      idTokenTtlSeconds?: number;
      /** Where under its origin the provider is served; its issuer is the origin with this path, e.g. `/tenant/` (Entra ID v1's issuer ends in a slash). */
      issuerPath?: string;
    } = {},
  ) {}

  /** On `port` when given (a provider that comes up where the bridge expects it), else a free one. */
  async start(port = 0): Promise<this> {
    const mount = (this.opts.issuerPath ?? '').replace(/\/+$/, '');
    this.server = createServer((req, res) => {
      this.hits.push(new URL(req.url ?? '/', 'http://x').pathname);
      // Mounted below the origin as oidc-provider documents: it builds its URLs from originalUrl.
      if (mount && req.url?.startsWith(mount)) {
        (req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url;
        req.url = req.url.slice(mount.length) || '/';
      }
      this.handler?.(req, res);
    });
    this.url = `http://127.0.0.1:${await listen(this.server, port)}${this.opts.issuerPath ?? ''}`;
    this.rotateKeys();
    return this;
  }

  rotateKeys(): void {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const kid = randomUUID();
    this.kids.push(kid);
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
    const secret = this.opts.clientSecret;
    const provider = new Provider(this.url, {
      clients: [
        {
          client_id: CLIENT_ID,
          ...(secret ? { client_secret: secret } : {}),
          token_endpoint_auth_method: secret ? 'client_secret_post' : 'none',
          redirect_uris: [this.redirectUri],
          grant_types: ['authorization_code'],
          response_types: ['code'],
        },
      ],
      jwks: { keys: [jwk] },
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['name'],
        groups: ['groups'],
      },
      scopes: ['openid', 'email', 'profile', 'groups'],
      // Claims in the ID token itself (Okta and Entra put groups there too).
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      ttl: { IdToken: this.opts.idTokenTtlSeconds ?? 3600 },
      cookies: { keys: ['oidc-test-cookie-key'] },
      findAccount: async (_ctx: unknown, sub: string): Promise<ProviderAccount | undefined> => {
        const user = this.users.get(sub);
        if (!user) return undefined;
        return { accountId: sub, claims: async () => ({ sub, ...user }) };
      },
    });
    this.handler = provider.callback();
  }

  async stop(): Promise<void> {
    await stop(this.server);
  }
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * A provider whose ID tokens the test shapes (wrong audience, expired, future-dated, wrong nonce,
 * signed by a key it does not publish): what a real provider never sends, and the bridge must refuse.
 * It checks PKCE like a real one.
 */
export class CraftingProvider {
  url = '';
  /** Changes the ID token's claims before it is signed. */
  tamper: (claims: Record<string, unknown>) => Record<string, unknown> = (c) => c;
  /** Sign with a key it does not publish (under the published key's id). */
  forge = false;
  /** Answer the authorization request with `error=access_denied`, as when the user cancels. */
  deny = false;
  private server: Server | undefined;
  private readonly kid = randomUUID();
  private readonly key: KeyObject;
  private readonly stranger: KeyObject;
  private readonly codes = new Map<string, { nonce: string; challenge: string }>();

  constructor(private readonly user: IdpUser) {
    this.key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    this.stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.url = `http://127.0.0.1:${await listen(this.server)}`;
    return this;
  }

  async stop(): Promise<void> {
    await stop(this.server);
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', this.url);
    if (u.pathname === '/.well-known/openid-configuration')
      return this.json(res, 200, {
        issuer: this.url,
        authorization_endpoint: `${this.url}/auth`,
        token_endpoint: `${this.url}/token`,
        jwks_uri: `${this.url}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      });
    if (u.pathname === '/jwks') {
      const pub = this.key.export({ format: 'jwk' });
      return this.json(res, 200, {
        keys: [{ kty: pub.kty, n: pub.n, e: pub.e, kid: this.kid, use: 'sig', alg: 'RS256' }],
      });
    }
    if (u.pathname === '/auth') {
      const code = randomBytes(16).toString('hex');
      this.codes.set(code, {
        nonce: u.searchParams.get('nonce') ?? '',
        challenge: u.searchParams.get('code_challenge') ?? '',
      });
      const back = new URL(u.searchParams.get('redirect_uri') ?? '');
      if (this.deny) back.searchParams.set('error', 'access_denied');
      else back.searchParams.set('code', code);
      back.searchParams.set('state', u.searchParams.get('state') ?? '');
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (u.pathname === '/token' && req.method === 'POST') {
      let raw = '';
      for await (const chunk of req) raw += chunk;
      const form = new URLSearchParams(raw);
      const grant = this.codes.get(form.get('code') ?? '');
      this.codes.delete(form.get('code') ?? '');
      const verifier = form.get('code_verifier') ?? '';
      if (!grant || b64url(createHash('sha256').update(verifier).digest()) !== grant.challenge)
        return this.json(res, 400, { error: 'invalid_grant' });
      const now = Math.floor(Date.now() / 1000);
      const claims = this.tamper({
        iss: this.url,
        sub: 'crafted-user',
        aud: form.get('client_id') ?? CLIENT_ID,
        iat: now,
        exp: now + 300,
        nonce: grant.nonce,
        ...this.user,
      });
      const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: this.kid }));
      const input = `${header}.${b64url(JSON.stringify(claims))}`;
      const sig = sign('sha256', Buffer.from(input), this.forge ? this.stranger : this.key);
      return this.json(res, 200, {
        access_token: randomBytes(16).toString('hex'),
        token_type: 'Bearer',
        expires_in: 300,
        id_token: `${input}.${b64url(sig)}`,
      });
    }
    res.writeHead(404).end();
  }
}

/** Cookies per host:port, as a browser would keep them for these loopback servers. */
export class CookieJar {
  private readonly byHost = new Map<string, Map<string, string>>();

  header(url: string): string {
    const jar = this.byHost.get(new URL(url).host);
    return jar ? [...jar].map(([k, v]) => `${k}=${v}`).join('; ') : '';
  }

  get(url: string, name: string): string | undefined {
    return this.byHost.get(new URL(url).host)?.get(name);
  }

  store(url: string, res: Response): void {
    const host = new URL(url).host;
    const jar = this.byHost.get(host) ?? new Map<string, string>();
    this.byHost.set(host, jar);
    for (const c of res.headers.getSetCookie()) {
      const pair = c.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /max-age=0\b/i.test(c) || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
      else jar.set(name, value);
    }
  }
}

/** A request with the jar's cookies, redirects not followed. */
export async function visit(jar: CookieJar, url: string, init: RequestInit = {}): Promise<Response> {
  const cookie = jar.header(url);
  const res = await fetch(url, {
    ...init,
    redirect: 'manual',
    headers: { ...(init.headers as Record<string, string> | undefined), ...(cookie ? { cookie } : {}) },
  });
  jar.store(url, res);
  return res;
}

/**
 * A browser's way through the provider: follows redirects, fills the dev login form with `login`
 * and confirms consent, until the provider sends it to a URL starting with `stopAt` (the bridge's
 * callback), which it returns unvisited.
 */
export async function throughProvider(
  jar: CookieJar,
  start: string,
  login: string,
  stopAt: string,
): Promise<string> {
  let url = start;
  let init: RequestInit = {};
  for (let step = 0; step < 20; step++) {
    if (url.startsWith(stopAt)) return url;
    const res = await visit(jar, url, init);
    init = {};
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      url = new URL(location, url).href;
      await res.arrayBuffer();
      continue;
    }
    const html = await res.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    const prompt = /name="prompt" value="(\w+)"/.exec(html)?.[1];
    if (res.status !== 200 || !action || !prompt)
      throw new Error(`the provider answered ${res.status} at ${url}: ${html.slice(0, 300)}`);
    const form = new URLSearchParams({ prompt });
    if (prompt === 'login') {
      form.set('login', login);
      form.set('password', 'any password');
    }
    url = new URL(action.replaceAll('&amp;', '&'), url).href;
    init = {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    };
  }
  throw new Error('too many steps through the provider');
}

export interface SsoBridge {
  url: string;
  adminKey: string;
  bridge: Bridge;
  logs: string[];
  close(): Promise<void>;
}

/** The real app on a port chosen up front, since AIBRIDGE_PUBLIC_URL (and so the redirect URI) names it. */
export async function startSsoBridge(
  port: number,
  env: Record<string, string>,
  build: Omit<BuildOptions, 'logStream'> = {},
  host = '127.0.0.1',
): Promise<SsoBridge> {
  const dir = await tempDir('aibridge-sso-');
  const config = loadConfig(
    { port: String(port), 'data-dir': dir },
    {
      AIBRIDGE_LOG_LEVEL: 'info',
      AIBRIDGE_AUTH_FAILURES_PER_MINUTE: '0',
      AIBRIDGE_PUBLIC_URL: `http://${host}:${port}`,
      ...env,
    },
  );
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const bridge = await buildApp(config, { ...build, logStream });
  const created = await bootstrapAdmin(bridge.identity, dir, config.adminEmail);
  await bridge.app.listen({ host, port });
  return {
    url: `http://${host}:${port}`,
    adminKey: created?.key ?? '',
    bridge,
    logs,
    close: () => bridge.close(),
  };
}

export { freePort };

/** A provider and the bridge that signs users in with it. */
export interface SsoSetUp {
  idp: OpenIdProvider;
  tb: SsoBridge;
}

/**
 * The usual SSO suite set-up: the bridge's port is chosen first (the provider's redirect URI names
 * it), an OpenID Provider with `users` and the client secret, then the bridge with that provider's
 * issuer, client id and secret, and `env` over them. A bridge that fails to start stops the
 * provider, so a failing `before` leaves no listener behind.
 */
export async function startSsoSetUp(
  users: Record<string, IdpUser>,
  env: Record<string, string> = {},
  opts: {
    build?: Omit<BuildOptions, 'logStream'>;
    /** Where the provider is served under its origin (OpenIdProvider's `issuerPath`). */
    issuerPath?: string;
    /** The issuer as the admin enters it, from the provider's own: by default the same. */
    issuer?: (idpIssuer: string) => string;
  } = {},
): Promise<SsoSetUp> {
  const port = await freePort();
  const idp = await new OpenIdProvider(`http://127.0.0.1:${port}/api/v1/auth/oidc/callback`, {
    clientSecret: CLIENT_SECRET,
    ...(opts.issuerPath === undefined ? {} : { issuerPath: opts.issuerPath }),
  }).start();
  for (const [login, user] of Object.entries(users)) idp.users.set(login, user);
  try {
    const tb = await startSsoBridge(
      port,
      {
        AIBRIDGE_OIDC_ISSUER: (opts.issuer ?? ((i) => i))(idp.url),
        AIBRIDGE_OIDC_CLIENT_ID: CLIENT_ID,
        AIBRIDGE_OIDC_CLIENT_SECRET: CLIENT_SECRET,
        ...env,
      },
      opts.build,
    );
    return { idp, tb };
  } catch (err) {
    await idp.stop();
    throw err;
  }
}
