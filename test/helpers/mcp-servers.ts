import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { freePort, type Listening, listenOnLoopback } from './loopback';

/** The real reference server from npm (`@modelcontextprotocol/server-everything`). */
export const EVERYTHING = path.resolve('node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/** server-everything over stdio, as a server definition. */
export function everythingStdio(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { transport: { type: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }, ...extra };
}

/** server-everything over streamable HTTP, in its own process on a free port. */
export async function startEverythingHttp(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.resume();
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${err}`)), 15_000);
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`server-everything exited ${code}: ${err}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * A reverse proxy in front of an MCP server that lets through only requests bearing one of
 * `tokens`, as a server with per-user credentials would. Records the tokens it saw.
 */
export class AuthGate {
  readonly tokens = new Set<string>();
  readonly seen: string[] = [];
  private readonly server = http.createServer((req, res) => this.handle(req, res));
  private listening: Listening | undefined;
  url = '';

  constructor(private readonly target: string) {}

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = `${this.listening.origin}/mcp`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    this.seen.push(token);
    if (!this.tokens.has(token)) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }
    const target = new URL(this.target);
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname + (req.url?.includes('?') ? req.url.slice(req.url.indexOf('?')) : ''),
        method: req.method,
        headers: { ...req.headers, host: target.host },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }
}

/** A URL nothing listens on: an MCP server that is down. */
export async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}/mcp`;
}

/**
 * An MCP server that takes OAuth 2.1 tokens: the authorisation server (metadata, dynamic client
 * registration, authorisation with PKCE S256 that approves at once, code and refresh-token
 * grants) and the protected resource (its metadata, and `/mcp` passed to the real server when the
 * bearer token is current), all on one port.
 */
export class OAuthGate {
  readonly clients = new Set<string>();
  private readonly codes = new Map<string, { client: string; challenge: string; redirect: string }>();
  private readonly access = new Set<string>();
  private readonly refresh = new Set<string>();
  /** Grants the token endpoint answered, in order. */
  readonly grants: string[] = [];
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;
  origin = '';

  constructor(private readonly target: string) {}

  get url(): string {
    return `${this.origin}/mcp`;
  }

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.origin = `${this.listening.origin}`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  /** Every access token stops working: the next use needs the refresh token. */
  expireAccessTokens(): void {
    this.access.clear();
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private async body(req: http.IncomingMessage): Promise<Record<string, string>> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    if ((req.headers['content-type'] ?? '').includes('json'))
      return JSON.parse(text) as Record<string, string>;
    return Object.fromEntries(new URLSearchParams(text));
  }

  private token(): Record<string, unknown> {
    const access = `at_${randomUUID()}`;
    const refresh = `rt_${randomUUID()}`;
    this.access.add(access);
    this.refresh.add(refresh);
    return { access_token: access, token_type: 'Bearer', expires_in: 3600, refresh_token: refresh };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    const p = url.pathname;
    if (p.startsWith('/.well-known/oauth-protected-resource'))
      return this.json(res, 200, { resource: this.url, authorization_servers: [this.origin] });
    if (
      p.startsWith('/.well-known/oauth-authorization-server') ||
      p.startsWith('/.well-known/openid-configuration')
    )
      return this.json(res, 200, {
        issuer: this.origin,
        authorization_endpoint: `${this.origin}/authorize`,
        token_endpoint: `${this.origin}/token`,
        registration_endpoint: `${this.origin}/register`,
        response_types_supported: ['code'],
        grant_types_supported: ['authorization_code', 'refresh_token'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['none'],
      });
    if (p === '/register' && req.method === 'POST') {
      const meta = await this.body(req);
      const id = `client_${randomUUID()}`;
      this.clients.add(id);
      return this.json(res, 201, {
        ...meta,
        client_id: id,
        client_id_issued_at: Math.floor(Date.now() / 1000),
      });
    }
    if (p === '/authorize') {
      const q = url.searchParams;
      const client = q.get('client_id') ?? '';
      if (!this.clients.has(client) || q.get('code_challenge_method') !== 'S256')
        return this.json(res, 400, { error: 'invalid_request' });
      const code = `code_${randomUUID()}`;
      const redirect = q.get('redirect_uri') ?? '';
      this.codes.set(code, { client, challenge: q.get('code_challenge') ?? '', redirect });
      const back = new URL(redirect);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state') ?? '');
      res.writeHead(302, { location: back.toString() });
      res.end();
      return;
    }
    if (p === '/token' && req.method === 'POST') {
      const b = await this.body(req);
      this.grants.push(b.grant_type ?? '');
      if (b.grant_type === 'authorization_code') {
        const c = this.codes.get(b.code ?? '');
        this.codes.delete(b.code ?? '');
        const challenge = createHash('sha256')
          .update(b.code_verifier ?? '')
          .digest('base64url');
        if (!c || c.client !== b.client_id || c.challenge !== challenge || c.redirect !== b.redirect_uri)
          return this.json(res, 400, { error: 'invalid_grant' });
        return this.json(res, 200, this.token());
      }
      if (b.grant_type === 'refresh_token' && this.refresh.delete(b.refresh_token ?? ''))
        return this.json(res, 200, this.token());
      return this.json(res, 400, { error: 'invalid_grant' });
    }
    if (p === '/mcp') {
      const token = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (!this.access.has(token)) {
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer resource_metadata="${this.origin}/.well-known/oauth-protected-resource/mcp"`,
        });
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
      }
      const target = new URL(this.target);
      const upstream = http.request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: req.method,
          headers: { ...req.headers, host: target.host },
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
      return;
    }
    this.json(res, 404, { error: 'not_found' });
  }
}

/**
 * A stateless streamable-HTTP MCP server in this process: each request gets a fresh SDK server
 * that `handlers` sets up (the response is given too, so a handler can answer as a broken backend
 * would). A server built with `silent` never answers anything.
 */
export class InProcessMcpServer {
  url = '';
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  private listening: Listening | undefined;

  constructor(
    private readonly name: string,
    private readonly handlers: (mcp: Server, res: http.ServerResponse) => void,
    private readonly silent = false,
    /** What it says it serves besides tools (`resources`, `prompts`). */
    private readonly capabilities: Record<string, object> = {},
  ) {}

  async start(): Promise<this> {
    this.listening = await listenOnLoopback(this.server);
    this.url = `${this.listening.origin}/mcp`;
    return this;
  }

  async stop(): Promise<void> {
    await this.listening?.stop();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.silent) return;
    const mcp = new Server(
      { name: this.name, version: '1.0.0' },
      { capabilities: { tools: { listChanged: true }, ...this.capabilities } },
    );
    this.handlers(mcp, res);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  }
}
