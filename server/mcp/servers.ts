import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { withoutUrlSecrets } from '../core/url-secrets';
import type { ServerErrorCode } from '../errors';
import { toolGlob } from '../policy/tool-rules';

/** Server names: short, lower case, no `__` (it separates the parts of an injected tool's name). */
const SERVER_NAME = '^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$';
const NAME_RE = new RegExp(SERVER_NAME);

/** What every injected tool's name starts with; the rest is `<server>__<tool>` (docs/mcp.md). */
export const TOOL_PREFIX = 'aibridge__';
/** Longest tool name every provider accepts. */
const MAX_TOOL_NAME = 64;

const HeaderName = Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" });
const EnvName = Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' });
const Pattern = Type.String({ minLength: 1, maxLength: 200 });

const HttpTransport = Type.Object(
  {
    type: Type.Literal('http'),
    url: Type.String({ minLength: 1, maxLength: 2000 }),
    headers: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8000 }))),
  },
  { additionalProperties: false },
);

const StdioTransport = Type.Object(
  {
    type: Type.Literal('stdio'),
    command: Type.String({ minLength: 1, maxLength: 1000 }),
    args: Type.Optional(Type.Array(Type.String({ maxLength: 8000 }), { maxItems: 100 })),
    env: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 8000 }))),
    cwd: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })),
  },
  { additionalProperties: false },
);

/** Where a credential goes: an HTTP header (`scheme` before it) or, for stdio, an environment variable. */
const Placement = {
  header: Type.Optional(HeaderName),
  scheme: Type.Optional(Type.String({ maxLength: 50 })),
  env: Type.Optional(EnvName),
};

const AuthNone = Type.Object({ type: Type.Literal('none') }, { additionalProperties: false });
const AuthSecret = Type.Object(
  {
    type: Type.Literal('secret'),
    ...Placement,
    /** The secret itself (sealed before it is stored; never shown again). */
    value: Type.Optional(Type.String({ minLength: 1, maxLength: 8000 })),
    /** Config file only: read the secret from the bridge's own environment. */
    fromEnv: Type.Optional(EnvName),
  },
  { additionalProperties: false },
);
const AuthPerUser = Type.Object(
  {
    type: Type.Literal('per_user'),
    ...Placement,
    /** Run the OAuth 2.1 authorisation flow against the server (HTTP only). */
    oauth: Type.Optional(
      Type.Object(
        {
          scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 50 })),
          /** A client registered beforehand; without one the bridge registers itself dynamically. */
          clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
          clientSecret: Type.Optional(Type.String({ minLength: 1, maxLength: 2000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** A server as admins write it, in the config file or in `PUT /api/v1/mcp/servers/:name`. */
export const McpServerBody = Type.Object(
  {
    description: Type.Optional(Type.String({ maxLength: 500 })),
    enabled: Type.Optional(Type.Boolean()),
    transport: Type.Union([HttpTransport, StdioTransport]),
    tools: Type.Optional(
      Type.Object(
        {
          allow: Type.Optional(Type.Array(Pattern, { maxItems: 200 })),
          deny: Type.Optional(Type.Array(Pattern, { maxItems: 200 })),
        },
        { additionalProperties: false },
      ),
    ),
    auth: Type.Optional(Type.Union([AuthNone, AuthSecret, AuthPerUser])),
    /** One tool call's limit for this server (default AIBRIDGE_MCP_CALL_TIMEOUT_MS). */
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
  },
  { additionalProperties: false },
);
export type McpServerBodyT = Static<typeof McpServerBody>;

/** The config file: `{ "servers": { "<name>": <server> } }`. */
const McpFile = Type.Object(
  { servers: Type.Record(Type.String(), McpServerBody) },
  { additionalProperties: false },
);

export type McpAuthKind = 'none' | 'secret' | 'per_user';

/** A server as the bridge keeps it: defaults applied, any shared secret sealed (`sealedSecret`). */
export interface McpServerConfig {
  name: string;
  description: string;
  enabled: boolean;
  transport: McpServerBodyT['transport'];
  tools: { allow: string[]; deny: string[] };
  auth: {
    type: McpAuthKind;
    header: string;
    scheme: string;
    env: string | null;
    /** Config file only: the environment variable holding the shared secret. */
    fromEnv: string | null;
    /** The shared secret, sealed with the credentials key (API) or, from the file, as written. */
    sealedSecret: string | null;
    plainSecret: string | null;
    oauth: {
      scopes: string[];
      clientId: string | null;
      /** A pre-registered client's secret: sealed (API) or as written (file). */
      clientSecret: string | null;
      clientSecretSealed: boolean;
    } | null;
  };
  timeoutMs: number | null;
  source: 'file' | 'api';
  updatedAt: string;
  /**
   * Header (HTTP) or env (stdio) values in `transport` are sealed with the credentials key
   * (sealed-transport.ts). Absent: as written (the config file, or a definition stored before
   * values were sealed).
   */
  transportSealed?: true;
}

/** A reason a server definition cannot be used; the message names the field. */
export class McpConfigError extends Error {
  readonly code: ServerErrorCode = 'mcp_invalid_server';
  constructor(message: string) {
    super(message);
    this.name = 'McpConfigError';
  }
}

/** Checks what TypeBox cannot, and applies defaults. `seal` turns a shared secret into its stored form. */
export function normalise(
  name: string,
  body: McpServerBodyT,
  source: 'file' | 'api',
  seal: ((secret: string, purpose: 'secret' | 'client_secret') => string) | null,
): McpServerConfig {
  if (!NAME_RE.test(name))
    throw new McpConfigError(`server name "${name}" must match ${SERVER_NAME} (lower case, digits, "-")`);
  const t = body.transport;
  if (t.type === 'http') {
    let url: URL;
    try {
      url = new URL(t.url);
    } catch {
      throw new McpConfigError(`transport.url "${withoutUrlSecrets(t.url)}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new McpConfigError('transport.url must be http(s)');
    // fetch refuses such a URL on every call, and its errors (logged, shown as the server's state)
    // repeated the password.
    if (url.username !== '' || url.password !== '')
      throw new McpConfigError(
        'transport.url must not carry a user name or password (the HTTP client refuses it): send the credential in transport.headers (e.g. "authorization": "Basic …") or with auth',
      );
  }
  const auth = body.auth ?? { type: 'none' as const };
  const placement: { header?: string; scheme?: string; env?: string } = auth.type === 'none' ? {} : auth;
  if (auth.type !== 'none' && t.type === 'stdio' && !placement.env)
    throw new McpConfigError(
      'auth.env is required for a stdio server: it names the variable the credential goes in',
    );
  if (auth.type === 'per_user' && auth.oauth && t.type !== 'http')
    throw new McpConfigError('auth.oauth needs an http transport');
  let sealedSecret: string | null = null;
  let plainSecret: string | null = null;
  let fromEnv: string | null = null;
  if (auth.type === 'secret') {
    if (auth.fromEnv && source === 'api')
      throw new McpConfigError('auth.fromEnv is for the config file; send auth.value');
    if (auth.value !== undefined) {
      if (source === 'file') plainSecret = auth.value;
      else if (seal) sealedSecret = seal(auth.value, 'secret');
      else throw new McpConfigError('no credentials key: a secret cannot be stored');
    } else if (auth.fromEnv) fromEnv = auth.fromEnv;
    else throw new McpConfigError('auth.value (or, in the file, auth.fromEnv) is required for a secret');
  }
  let oauth: McpServerConfig['auth']['oauth'] = null;
  if (auth.type === 'per_user' && auth.oauth) {
    const secret = auth.oauth.clientSecret;
    if (secret !== undefined && source === 'api' && !seal)
      throw new McpConfigError('no credentials key: a client secret cannot be stored');
    oauth = {
      scopes: auth.oauth.scopes ?? [],
      clientId: auth.oauth.clientId ?? null,
      clientSecret:
        secret === undefined ? null : source === 'api' && seal ? seal(secret, 'client_secret') : secret,
      clientSecretSealed: secret !== undefined && source === 'api',
    };
  }
  return {
    name,
    description: body.description ?? '',
    enabled: body.enabled ?? true,
    transport: t,
    tools: { allow: body.tools?.allow ?? ['*'], deny: body.tools?.deny ?? [] },
    auth: {
      type: auth.type,
      header: (placement.header ?? 'authorization').toLowerCase(),
      scheme: placement.scheme ?? 'Bearer',
      env: placement.env ?? null,
      fromEnv,
      sealedSecret,
      plainSecret,
      oauth,
    },
    timeoutMs: body.timeoutMs ?? null,
    source,
    updatedAt: new Date().toISOString(),
  };
}

/** Reads the config file; a missing file means no servers, a bad one stops the start with its reason. */
export function loadServersFile(file: string): McpServerConfig[] {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new McpConfigError(`${file} is not JSON: ${(err as Error).message}`);
  }
  if (!Value.Check(McpFile, json)) {
    const first = [...Value.Errors(McpFile, json)][0];
    throw new McpConfigError(`${file}: ${first?.path || '/'} ${first?.message ?? 'is invalid'}`);
  }
  return Object.entries(json.servers).map(([name, body]) => {
    try {
      return normalise(name, body, 'file', null);
    } catch (err) {
      throw new McpConfigError(`${file}: servers.${name}: ${(err as Error).message}`);
    }
  });
}

/** A server as admins read it: secrets never shown, only whether one is set. */
export function publicView(s: McpServerConfig): Record<string, unknown> {
  const { sealedSecret, plainSecret, oauth, ...auth } = s.auth;
  const transport =
    s.transport.type === 'http'
      ? {
          ...s.transport,
          ...(s.transport.headers
            ? { headers: Object.fromEntries(Object.keys(s.transport.headers).map((h) => [h, '***'])) }
            : {}),
        }
      : {
          ...s.transport,
          ...(s.transport.env
            ? { env: Object.fromEntries(Object.keys(s.transport.env).map((k) => [k, '***'])) }
            : {}),
        };
  return {
    name: s.name,
    description: s.description,
    enabled: s.enabled,
    source: s.source,
    transport,
    tools: s.tools,
    auth: {
      ...auth,
      hasSecret: sealedSecret !== null || plainSecret !== null || auth.fromEnv !== null,
      oauth: oauth
        ? { scopes: oauth.scopes, clientId: oauth.clientId, hasClientSecret: oauth.clientSecret !== null }
        : null,
    },
    timeoutMs: s.timeoutMs,
    updatedAt: s.updatedAt,
  };
}

/**
 * Whether a tool passes the server's allow patterns and none of its deny patterns: `*` matches any
 * run of characters, everything else (`?` too) itself. Matched in time linear in the name, which is
 * the MCP server's: as an anchored regular expression, `*_*_*delete*` took 44 s of stopped event
 * loop on a listed name of 10,000 characters (V8's engine backtracks through every split).
 */
export function toolAllowed(tool: string, filter: { allow: string[]; deny: string[] }): boolean {
  const matches = (patterns: string[]): boolean =>
    patterns.some((p) => toolGlob(p, { questionMark: 'literal' }).test(tool));
  return matches(filter.allow) && !matches(filter.deny);
}

/**
 * The name the model sees: `aibridge__<server>__<tool>`, with characters providers refuse replaced
 * by `_`. A name that would be longer than providers allow, or that another tool of the server
 * already took, ends in a short hash of the real name instead.
 */
export function injectedName(server: string, tool: string, taken: ReadonlySet<string>): string {
  const base = `${TOOL_PREFIX}${server}__${tool.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  if (base.length <= MAX_TOOL_NAME && !taken.has(base)) return base;
  const hash = createHash('sha256').update(`${server}\0${tool}`).digest('hex').slice(0, 8);
  return `${base.slice(0, MAX_TOOL_NAME - hash.length - 1)}_${hash}`;
}
