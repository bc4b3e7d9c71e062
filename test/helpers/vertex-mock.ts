import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export const VERTEX_PROJECT = 'aibridge-test-project';
export const VERTEX_REGION = 'us-east5';
export const VERTEX_TEXT = 'Hello from the Vertex mock.';
export const VERTEX_USAGE = {
  input_tokens: 43,
  output_tokens: 19,
  cache_read_input_tokens: 8,
  cache_creation_input_tokens: 0,
};
export const VERTEX_COUNT = 57;

export type VertexScenario = 'text' | 'tool' | 'quota' | 'anthropic-400';

/** The recorded Gemini-on-Vertex answers the mock serves for `publishers/google` models. */
const GEMINI_FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'vertex-gemini');
const fixture = (name: string): Buffer => fs.readFileSync(path.join(GEMINI_FIXTURES, name));

/** A Gemini answer: its status, content type and bytes. */
interface GeminiAnswer {
  status: number;
  type: string;
  bytes: Buffer;
}

/** The SSE fixture's chunks, for `streamGenerateContent` without `alt=sse` (one JSON array). */
function sseChunks(bytes: Buffer): unknown[] {
  return bytes
    .toString('utf8')
    .split(/\r?\n\r?\n/)
    .filter((e) => e.startsWith('data: '))
    .map((e) => JSON.parse(e.slice('data: '.length)) as unknown);
}

export interface SeenVertexRequest {
  path: string;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
  /** The bearer token it carried, and whether the mock's token endpoint issued it and it is unexpired. */
  token: string;
  tokenValid: boolean;
}

export interface TokenGrant {
  token: string;
  /** The verified assertion's claims. */
  claims: Record<string, unknown>;
}

/** A test service account: an RSA key pair made here, its JSON key file pointing at the mock's token endpoint. */
export interface TestServiceAccount {
  email: string;
  publicKey: crypto.KeyObject;
  json(tokenUri: string): Record<string, string>;
}

export function testServiceAccount(): TestServiceAccount {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const email = 'aibridge-vertex@aibridge-test-project.iam.gserviceaccount.com';
  return {
    email,
    publicKey,
    json: (tokenUri) => ({
      type: 'service_account',
      project_id: VERTEX_PROJECT,
      private_key_id: 'f00dfeedf00dfeedf00dfeedf00dfeedf00dfeed',
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: email,
      client_id: '100000000000000000001',
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: tokenUri,
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      universe_domain: 'googleapis.com',
    }),
  };
}

function b64json(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function sse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function streamEvents(model: string, scenario: VertexScenario): string[] {
  const tool = scenario === 'tool';
  const block = tool
    ? [
        sse('content_block_start', {
          type: 'content_block_start',
          index: 0,
          content_block: { type: 'tool_use', id: 'toolu_vrtx_01', name: 'get_weather', input: {} },
        }),
        sse('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'input_json_delta', partial_json: '{"city":' },
        }),
        sse('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'input_json_delta', partial_json: '"Rome"}' },
        }),
      ]
    : [
        sse('content_block_start', {
          type: 'content_block_start',
          index: 0,
          content_block: { type: 'text', text: '' },
        }),
        sse('ping', { type: 'ping' }),
        sse('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'text_delta', text: 'Hello from ' },
        }),
        sse('content_block_delta', {
          type: 'content_block_delta',
          index: 0,
          delta: { type: 'text_delta', text: 'the Vertex mock.' },
        }),
      ];
  return [
    sse('message_start', {
      type: 'message_start',
      message: {
        id: 'msg_vrtx_01AbCdEfGh',
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...VERTEX_USAGE, output_tokens: 1 },
      },
    }),
    ...block,
    sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
    sse('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: VERTEX_USAGE.output_tokens },
    }),
    sse('message_stop', { type: 'message_stop' }),
  ];
}

/**
 * Google's OAuth2 token endpoint for a test service account and Vertex AI's Claude endpoints (and
 * Gemini's, `publishers/google`, answering test/fixtures/vertex-gemini),
 * protocol-exact: the token endpoint verifies the JWT-bearer assertion's RS256 signature with the
 * service account's public key and issues short opaque tokens; the Vertex endpoint serves only a
 * bearer token it issued and has not expired, and answers Anthropic's JSON and SSE (Vertex passes
 * Claude's own wire through), or Google's error shape for what Vertex itself refuses.
 */
export class VertexMock {
  readonly seen: SeenVertexRequest[] = [];
  readonly grants: TokenGrant[] = [];
  scenario: VertexScenario = 'text';
  /** `expires_in` of the next tokens issued, in seconds. */
  expiresIn = 3600;
  url = '';
  private readonly issued = new Map<string, number>();
  private server = http.createServer((req, res) => void this.handle(req, res));

  constructor(private readonly account: TestServiceAccount) {}

  get tokenUri(): string {
    return `${this.url}/token`;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private json(
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers });
    res.end(JSON.stringify(body));
  }

  /** Why a JWT-bearer grant is refused (its assertion must verify against the service account's key), or its claims. */
  private checkGrant(raw: Buffer): string | Record<string, unknown> {
    const form = new URLSearchParams(raw.toString('utf8'));
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return 'unsupported grant';
    const [h, p, s] = (form.get('assertion') ?? '').split('.');
    if (!h || !p || !s) return 'malformed assertion';
    const header = b64json(h);
    const claims = b64json(p);
    const signed = crypto.verify(
      'RSA-SHA256',
      Buffer.from(`${h}.${p}`),
      this.account.publicKey,
      Buffer.from(s, 'base64url'),
    );
    if (header.alg !== 'RS256' || !signed) return 'Invalid JWT Signature.';
    if (claims.iss !== this.account.email) return 'unknown issuer';
    if (typeof claims.exp !== 'number' || claims.exp < Math.floor(Date.now() / 1000))
      return 'assertion expired';
    if (
      !String(claims.scope ?? '')
        .split(' ')
        .includes('https://www.googleapis.com/auth/cloud-platform')
    )
      return 'scope missing';
    return claims;
  }

  /** `POST /token`: Google's token endpoint answer to a service account's signed assertion. */
  private token(raw: Buffer, res: http.ServerResponse): void {
    const claims = this.checkGrant(raw);
    if (typeof claims === 'string') {
      this.json(res, 400, { error: 'invalid_grant', error_description: claims });
      return;
    }
    const token = `ya29.test-${this.grants.length + 1}-${crypto.randomBytes(6).toString('hex')}`;
    this.issued.set(token, Date.now() + this.expiresIn * 1000);
    this.grants.push({ token, claims });
    this.json(res, 200, { access_token: token, expires_in: this.expiresIn, token_type: 'Bearer' });
  }

  /**
   * Gemini on Vertex (`publishers/google`): the recorded answers under test/fixtures/vertex-gemini,
   * and Vertex's refusals: a content without a `role` (the Gemini API takes one, Vertex does not),
   * and the quota error.
   */
  private gemini(method: string, query: URLSearchParams, body: Record<string, unknown>): GeminiAnswer {
    const json = (status: number, bytes: Buffer): GeminiAnswer => ({
      status,
      type: 'application/json; charset=UTF-8',
      bytes,
    });
    const google = (status: number, message: string, name: string) =>
      json(status, Buffer.from(JSON.stringify({ error: { code: status, message, status: name } })));
    const contents = Array.isArray(body.contents) ? (body.contents as Record<string, unknown>[]) : [];
    if (contents.length === 0 || contents.some((c) => c.role !== 'user' && c.role !== 'model'))
      return google(400, 'Please use a valid role: user, model.', 'INVALID_ARGUMENT');
    if (method === 'countTokens') return json(200, fixture('count-tokens.json'));
    if (this.scenario === 'quota') return json(429, fixture('error-429-resource-exhausted.json'));
    const kind = this.scenario === 'tool' ? 'tool' : 'text';
    if (method === 'generateContent') return json(200, fixture(`generate-${kind}.json`));
    if (method !== 'streamGenerateContent') return google(404, 'not found', 'NOT_FOUND');
    const stream = fixture(`stream-${kind}.sse`);
    if (query.get('alt') === 'sse') return { status: 200, type: 'text/event-stream', bytes: stream };
    return json(200, Buffer.from(JSON.stringify(sseChunks(stream))));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = req.url ?? '';
    if (req.method === 'POST' && url === '/token') return this.token(raw, res);
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const expires = this.issued.get(token);
    const tokenValid = expires !== undefined && expires > Date.now();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      // Recorded as empty; the shape assertions of the test fail on it.
    }
    this.seen.push({ path: url, body, headers: req.headers, token, tokenValid });
    const requestId = { 'request-id': `req_vrtx_${this.seen.length}` };
    if (!tokenValid)
      return this.json(res, 401, {
        error: {
          code: 401,
          message: 'Request had invalid authentication credentials. Expected OAuth 2 access token.',
          status: 'UNAUTHENTICATED',
        },
      });
    const gemini = new RegExp(
      `^/(v1|v1beta1)/projects/${VERTEX_PROJECT}/locations/${VERTEX_REGION}/publishers/google/models/([^/:?]+):(\\w+)(\\?.*)?$`,
    ).exec(url);
    if (gemini) {
      const answer = this.gemini(gemini[3] ?? '', new URLSearchParams(gemini[4] ?? ''), body);
      res.writeHead(answer.status, { 'content-type': answer.type });
      res.end(answer.bytes);
      return;
    }
    const base = `/v1/projects/${VERTEX_PROJECT}/locations/${VERTEX_REGION}/publishers/anthropic/models/`;
    const m = url.startsWith(base)
      ? /^([^/:]+):(rawPredict|streamRawPredict)$/.exec(url.slice(base.length))
      : null;
    if (!m)
      return this.json(res, 404, {
        error: { code: 404, message: `The requested URL ${url} was not found.`, status: 'NOT_FOUND' },
      });
    const [, model = '', method] = m;
    if (model === 'count-tokens') return this.json(res, 200, { input_tokens: VERTEX_COUNT }, requestId);
    if (this.scenario === 'quota')
      return this.json(res, 429, {
        error: {
          code: 429,
          message:
            'Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-sonnet-4-5. Please submit a quota increase request.',
          status: 'RESOURCE_EXHAUSTED',
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '7s' }],
        },
      });
    if (this.scenario === 'anthropic-400')
      return this.json(
        res,
        400,
        {
          type: 'error',
          error: { type: 'invalid_request_error', message: 'max_tokens: Field required' },
          request_id: 'req_vrtx_bad',
        },
        requestId,
      );
    const name = decodeURIComponent(model).split('@')[0] ?? model;
    if (method === 'rawPredict') {
      const content =
        this.scenario === 'tool'
          ? [{ type: 'tool_use', id: 'toolu_vrtx_01', name: 'get_weather', input: { city: 'Rome' } }]
          : [{ type: 'text', text: VERTEX_TEXT }];
      return this.json(
        res,
        200,
        {
          id: 'msg_vrtx_01AbCdEfGh',
          type: 'message',
          role: 'assistant',
          model: name,
          content,
          stop_reason: this.scenario === 'tool' ? 'tool_use' : 'end_turn',
          stop_sequence: null,
          usage: VERTEX_USAGE,
        },
        requestId,
      );
    }
    res.writeHead(200, {
      ...requestId,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    });
    for (const e of streamEvents(name, this.scenario)) res.write(e);
    res.end();
  }
}
