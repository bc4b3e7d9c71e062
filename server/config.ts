import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import path from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { patternProblem } from './audit/pattern-guard';
import { nearestName } from './core/nearest-name';
import { duplicateKey } from './duplicate-keys';
import type { ServerErrorCode } from './errors';
import { parseTrustedProxies } from './http/trusted-proxies';
import type { GroupMapping } from './identity/group-mapping';
import { envSecret } from './identity/keys';
import { isValidKey, type McpSettings } from './mcp/settings';
import { byokTeams, ProvidersFileError, providerInstances, type UpstreamConfig } from './provider-config';
import { allFamilies } from './providers/registry';
import { type AliasTable, fileAliases } from './routing/aliases';
import { parseRoutes, type RouteTable, RouteTableError } from './routing/routes';
import type { TracingConfig } from './telemetry/tracing';

export type { InstanceModelPrice, InstancePrices, UpstreamConfig } from './provider-config';

export interface TimeoutConfig {
  /** TCP + TLS connect to the provider. */
  readonly connectMs: number;
  /** From request sent to response headers received. */
  readonly headersMs: number;
  /** Longest silence between two chunks of a response body. */
  readonly idleMs: number;
}

/** What one client may hold open or send, so no member can stall or exhaust the bridge (docs/security.md). */
export interface ClientLimits {
  /** A request's headers must be complete this long after its first byte (slowloris). */
  readonly headersTimeoutMs: number;
  /** A request's body must be complete this long after its headers; 0: no limit. Responses are not timed by it. */
  readonly bodyTimeoutMs: number;
  /** Open connections one client address may hold; 0: no limit. Trusted proxies are not counted. */
  readonly connectionsPerAddress: number;
  /** AIBRIDGE_TRUSTED_PROXIES: addresses or CIDRs whose `X-Forwarded-For` names the client. */
  readonly trustedProxies: readonly string[];
  /** Deepest nesting of arrays and objects accepted in a JSON request body. */
  readonly maxJsonDepth: number;
  /** Most objects and arrays accepted in a model request's JSON body (each costs heap once parsed). */
  readonly maxJsonContainers: number;
  /** Live-event WebSockets one user may hold open at once. */
  readonly liveSocketsPerUser: number;
  /** Live-event WebSockets one key may hold open at once (at most the per-user cap takes effect). */
  readonly liveSocketsPerKey: number;
  /** Admin-page sessions one key may hold; a new sign-in beyond it ends the oldest. */
  readonly adminSessionsPerKey: number;
  /** Live (not revoked, not expired) bridge keys one user may hold; minting beyond it is refused. */
  readonly keysPerUser: number;
  /** Request-body bytes the replica holds at once over every request (server/http/body-budget.ts); 0: no budget. */
  readonly bodyBytesInFlight: number;
  /** Model requests one user may have running at once on a replica (server/proxy/admission.ts, withinInFlight); 0: no cap. */
  readonly requestsInFlightPerUser: number;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly adminEmail: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Largest request body accepted, in bytes. */
  readonly bodyLimit: number;
  readonly shutdownGraceMs: number;
  readonly timeouts: TimeoutConfig;
  /**
   * The organisation's egress proxy for the bridge's own outbound calls (providers, MCP servers,
   * the identity provider, alert webhooks), from the standard HTTPS_PROXY, HTTP_PROXY and NO_PROXY;
   * undefined: every call goes direct.
   */
  readonly egressProxy: EgressProxy | undefined;
  readonly breaker: {
    /** Consecutive provider failures that open a breaker; 0 turns breakers off. */
    readonly threshold: number;
    readonly cooldownMs: number;
  };
  /** The provider instances by name (`anthropic`, `openai`, and the providers file's), in route order. */
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>;
  /** Bring your own key: the teams the providers file lets send their own provider credentials (`*`: all). */
  readonly byok: { readonly teams: readonly string[] };
  /** The providers file's model aliases (docs/routing.md#model-aliases); checked further at start. */
  readonly aliases: AliasTable;
  /** The providers file's routing table (docs/routing.md): a model → the targets tried in order. */
  readonly routes: RouteTable;
  readonly spend: SpendConfig;
  readonly alerts: AlertConfig;
  /** Bearer token that may read `/metrics` besides admin keys; undefined: admin keys only. */
  readonly metricsToken: string | undefined;
  /**
   * The secret bridge keys are hashed under (AIBRIDGE_KEY_HASH_SECRET); undefined: the one generated
   * in the data dir. Replicas on one database must share it (the store keeps a verifier of it).
   */
  readonly keyHashSecret: string | undefined;
  /** A separate, unauthenticated listener for `/metrics` (bind it where only Prometheus reaches). */
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  /** Per-user series (by user id); off by default for privacy and cardinality. */
  readonly metricsPerUser: boolean;
  /** What happens when audit records cannot be written: refuse new requests, or serve on. */
  readonly auditFailure: 'open' | 'closed';
  /**
   * When a metered answer's end reaches the client: `stored`, once its record is in the store (no
   * answer a client saw end is lost to a replica killed a moment later); `sent`, at once (the
   * record follows). Default `stored` with PostgreSQL, `sent` with the embedded store.
   */
  readonly auditAck: 'stored' | 'sent';
  /**
   * The embedded store's group commit: its journal syncs interception records at most once per
   * this many ms, records of the meantime sharing the next sync. Default 10 with `auditAck` `sent`
   * (nobody waits on the sync), 0 with `stored` (each answer's end would wait up to this long).
   */
  readonly auditSyncMs: number;
  /** Interception records older than this many days are deleted in the background; 0 keeps them all. */
  readonly auditRetentionDays: number;
  /** What records keep of conversations unless a team says otherwise. */
  readonly auditCapture: 'none' | 'prompt' | 'full';
  /** Extra regular expressions whose matches are redacted from stored text, besides the built-in secret kinds. */
  readonly redactPatterns: string[];
  /** Records kept for retry while the store refuses writes (open mode drops the oldest beyond it). */
  readonly auditQueueLimit: number;
  /** Bad keys one address may present per minute before it is answered 429; 0 turns it off. */
  readonly authFailuresPerMinute: number;
  /** How long an admin-page session lasts after sign-in (AIBRIDGE_ADMIN_SESSION_HOURS). */
  readonly adminSessionHours: number;
  /** How long a key minted by the device sign-in (`aibridge login`) lasts (AIBRIDGE_DEVICE_KEY_DAYS). */
  readonly deviceKeyDays: number;
  /**
   * How long after the sign-in that minted it a device key may still be renewed, in days
   * (AIBRIDGE_DEVICE_KEY_MAX_DAYS); 0: renewed for as long as it is used.
   */
  readonly deviceKeyMaxDays: number;
  readonly limits: ClientLimits;
  /** Identity-provider groups → team and role, for OIDC sign-in and SCIM (docs/sso.md). */
  readonly groups: GroupMapping;
  /** Sign-in with the organisation's OpenID Provider (docs/sso.md); undefined: AIBRIDGE_OIDC_ISSUER is not set. */
  readonly oidc: OidcSettings | undefined;
  /** AIBRIDGE_ADMIN_KEY_SIGNIN: whether the admin page still takes a bridge key (false once SSO works). */
  readonly adminKeySignIn: boolean;
  /** AIBRIDGE_SCIM_TOKEN: the identity provider's bearer token for /scim/v2; undefined: SCIM is off (404). */
  readonly scimToken: string | undefined;
  readonly tracing: TracingConfig;
  /** Central MCP tools injected into model requests (docs/mcp.md). */
  readonly mcp: McpSettings;
  /** AIBRIDGE_DATABASE_URL: a PostgreSQL database selects the PostgreSQL store (docs/storage.md); else the embedded store. */
  readonly databaseUrl: string | undefined;
}

/** The bridge as an OIDC relying party (the OIDC settings, docs/sso.md). */
export interface OidcSettings {
  readonly issuer: string;
  readonly clientId: string;
  /** Undefined: a public client (PKCE only, no client authentication). A secret: never logged. */
  readonly clientSecret: string | undefined;
  readonly scopes: readonly string[];
  /** `<AIBRIDGE_PUBLIC_URL>/api/v1/auth/oidc/callback`, registered at the provider. */
  readonly redirectUri: string;
  readonly emailClaim: string;
  readonly requireVerifiedEmail: boolean;
  readonly nameClaim: string;
  readonly groupsClaim: string;
  /** Lower-case email domains allowed to sign in; empty: any. */
  readonly allowedDomains: readonly string[];
  /** Groups of which a user must be in at least one; empty: any. */
  readonly allowedGroups: readonly string[];
  /** The provider's name on the admin page's button. */
  readonly displayName: string;
}

export interface SpendConfig {
  /** A JSON file of model prices that add to or override the bundled price data. */
  readonly pricesFile: string | undefined;
  /** Output tokens a block budget reserves for a request that does not say its maximum. */
  readonly defaultMaxOutputTokens: number;
  /**
   * The least a block budget reserves for a request whose real input is not in its body
   * (`previous_response_id`, stored conversations, file references, server-side tools) or whose
   * output has no cap: no honest upper bound exists for those (docs/spend.md).
   */
  readonly requestFloorUsd: number;
  /**
   * AIBRIDGE_UNPRICED_MODELS: `allow` (a request for a model without a price is served and flagged)
   * or `block` (refused with `403 model_unpriced` until an admin prices the model): spend the bridge
   * cannot count cannot be held to a budget.
   */
  readonly unpricedModels: 'allow' | 'block';
  /** Rate limits every user gets unless an admin sets their own; 0 means none. */
  readonly defaultRpm: number;
  readonly defaultTpm: number;
}

export interface AlertConfig {
  readonly webhookUrl: string | undefined;
  /** Attempts per alert, the first included. */
  readonly webhookAttempts: number;
  /** First retry delay; each retry doubles it. */
  readonly webhookBackoffMs: number;
  /** How many times the baseline a user's last hour must reach to be abnormal. */
  readonly anomalyFactor: number;
  /** Below this last-hour spend (USD) nobody is abnormal: small numbers are noise. */
  readonly anomalyMinUsd: number;
  /** Below this many last-hour tokens nobody is abnormal. */
  readonly anomalyMinTokens: number;
  /** Requests in one minute from one user that count as a burst; 0 turns the rule off. */
  readonly burstRpm: number;
}

/** HTTPS_PROXY, HTTP_PROXY and NO_PROXY as read (docs/configuration.md#egress-proxy). */
export interface EgressProxy {
  /** The proxy for https:// destinations (a CONNECT tunnel); undefined: they go direct. May hold credentials. */
  readonly httpsProxy: string | undefined;
  /** The proxy for http:// destinations; undefined: they go direct. May hold credentials. */
  readonly httpProxy: string | undefined;
  /** Hosts (and `host:port`s, `.domain`s, `*`) reached direct, comma- or space-separated. */
  readonly noProxy: string;
}

/** A setting with a bad value. The message names the setting so the admin can fix it. */
export class ConfigError extends Error {
  readonly code: ServerErrorCode = 'invalid_config';
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`invalid configuration: ${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

/**
 * Every environment variable the bridge reads, read nowhere but in this file. docs/configuration.md
 * documents each; test/server/config-doc.test.ts keeps the list, this file and the doc in sync, and
 * `Env` only has these names, so reading another one does not compile.
 */
export const ENV_VARS = [
  'AIBRIDGE_REDACT_PATTERNS',
  'OTEL_SDK_DISABLED',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_SERVICE_NAME',
  'AIBRIDGE_OTEL_CAPTURE_PROMPTS',
  'AIBRIDGE_MCP_CREDENTIALS_KEY',
  'AIBRIDGE_MCP_CONFIG',
  'AIBRIDGE_MCP_MAX_ROUNDS',
  'AIBRIDGE_MCP_CALL_TIMEOUT_MS',
  'AIBRIDGE_MCP_GATEWAY_CALL_TIMEOUT_MS',
  'AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER',
  'AIBRIDGE_MCP_INJECT_SKIP_CLIENTS',
  'AIBRIDGE_MCP_CONNECT_TIMEOUT_MS',
  'AIBRIDGE_MCP_REFRESH_MS',
  'AIBRIDGE_MCP_RESULT_LIMIT',
  'AIBRIDGE_MCP_IDLE_MS',
  'AIBRIDGE_MCP_API_STDIO',
  'AIBRIDGE_PUBLIC_URL',
  'AIBRIDGE_DATABASE_URL',
  'AIBRIDGE_HOST',
  'AIBRIDGE_PORT',
  'AIBRIDGE_DATA_DIR',
  'AIBRIDGE_ADMIN_EMAIL',
  'AIBRIDGE_LOG_LEVEL',
  'AIBRIDGE_BODY_LIMIT',
  'AIBRIDGE_SHUTDOWN_GRACE_MS',
  'AIBRIDGE_CONNECT_TIMEOUT_MS',
  'AIBRIDGE_HEADERS_TIMEOUT_MS',
  'AIBRIDGE_IDLE_TIMEOUT_MS',
  'AIBRIDGE_BREAKER_THRESHOLD',
  'AIBRIDGE_BREAKER_COOLDOWN_MS',
  'AIBRIDGE_ANTHROPIC_BASE_URL',
  'AIBRIDGE_ANTHROPIC_API_KEY',
  'AIBRIDGE_OPENAI_BASE_URL',
  'AIBRIDGE_OPENAI_API_KEY',
  'AIBRIDGE_GEMINI_BASE_URL',
  'AIBRIDGE_GEMINI_API_KEY',
  'AIBRIDGE_PROVIDERS_FILE',
  'AIBRIDGE_PRICES_FILE',
  'AIBRIDGE_BUDGET_DEFAULT_MAX_TOKENS',
  'AIBRIDGE_BUDGET_REQUEST_FLOOR_USD',
  'AIBRIDGE_UNPRICED_MODELS',
  'AIBRIDGE_RATE_LIMIT_RPM',
  'AIBRIDGE_RATE_LIMIT_TPM',
  'AIBRIDGE_ALERT_WEBHOOK_URL',
  'AIBRIDGE_ALERT_WEBHOOK_ATTEMPTS',
  'AIBRIDGE_ALERT_WEBHOOK_BACKOFF_MS',
  'AIBRIDGE_ANOMALY_FACTOR',
  'AIBRIDGE_ANOMALY_MIN_USD',
  'AIBRIDGE_ANOMALY_MIN_TOKENS',
  'AIBRIDGE_BURST_RPM',
  'AIBRIDGE_METRICS_TOKEN',
  'AIBRIDGE_METRICS_PORT',
  'AIBRIDGE_METRICS_HOST',
  'AIBRIDGE_METRICS_PER_USER',
  'AIBRIDGE_AUDIT_QUEUE_LIMIT',
  'AIBRIDGE_AUDIT_CAPTURE',
  'AIBRIDGE_AUDIT_RETENTION_DAYS',
  'AIBRIDGE_AUDIT_FAILURE',
  'AIBRIDGE_AUDIT_ACK',
  'AIBRIDGE_AUDIT_SYNC_MS',
  'AIBRIDGE_AUTH_FAILURES_PER_MINUTE',
  'AIBRIDGE_ADMIN_SESSION_HOURS',
  // Limits on what a member controls (docs/security.md).
  'AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS',
  'AIBRIDGE_REQUEST_BODY_TIMEOUT_MS',
  'AIBRIDGE_CONNECTIONS_PER_ADDRESS',
  'AIBRIDGE_TRUSTED_PROXIES',
  'AIBRIDGE_MAX_JSON_DEPTH',
  'AIBRIDGE_MAX_JSON_CONTAINERS',
  'AIBRIDGE_LIVE_SOCKETS_PER_USER',
  'AIBRIDGE_LIVE_SOCKETS_PER_KEY',
  'AIBRIDGE_ADMIN_SESSIONS_PER_KEY',
  'AIBRIDGE_KEYS_PER_USER',
  'AIBRIDGE_BODY_BYTES_IN_FLIGHT',
  'AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER',
  // The keyed hash's secret: a secret, so it is never logged (Config is never logged whole).
  'AIBRIDGE_KEY_HASH_SECRET',
  // The admin CLI (`aibridge users|keys|audit`), docs/cli.md; AIBRIDGE_PORT and AIBRIDGE_DATA_DIR too.
  // Single sign-on and SCIM (docs/sso.md).
  'AIBRIDGE_GROUP_TEAMS',
  'AIBRIDGE_OIDC_ADMIN_GROUP',
  'AIBRIDGE_DEVICE_KEY_DAYS',
  'AIBRIDGE_DEVICE_KEY_MAX_DAYS',
  // `aibridge login` and `aibridge env` keep the device key under $XDG_CONFIG_HOME/aibridge (docs/cli.md).
  'XDG_CONFIG_HOME',
  'AIBRIDGE_OIDC_ISSUER',
  'AIBRIDGE_OIDC_CLIENT_ID',
  // A secret: never logged (Config is never logged whole).
  'AIBRIDGE_OIDC_CLIENT_SECRET',
  'AIBRIDGE_OIDC_SCOPES',
  'AIBRIDGE_OIDC_EMAIL_CLAIM',
  'AIBRIDGE_OIDC_REQUIRE_VERIFIED_EMAIL',
  'AIBRIDGE_OIDC_NAME_CLAIM',
  'AIBRIDGE_OIDC_GROUPS_CLAIM',
  'AIBRIDGE_OIDC_ALLOWED_DOMAINS',
  'AIBRIDGE_OIDC_ALLOWED_GROUPS',
  'AIBRIDGE_OIDC_DISPLAY_NAME',
  'AIBRIDGE_ADMIN_KEY_SIGNIN',
  // A secret: the bearer token of /scim/v2 (never logged; Config is never logged whole).
  'AIBRIDGE_SCIM_TOKEN',
  'AIBRIDGE_URL',
  'AIBRIDGE_ADMIN_KEY',
  // The conventional egress proxy variables, in both spellings (the lower-case one wins, as in curl).
  // A proxy URL may carry credentials: never logged, nor echoed in an error.
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'NO_PROXY',
  'no_proxy',
] as const;

export type EnvVar = (typeof ENV_VARS)[number];

/** The environment as the bridge sees it: only the variables it reads. `process.env` fits. */
export type Env = Readonly<{ [K in EnvVar]?: string | undefined }>;

/** Flags of `aibridge serve`, as parsed from argv (strings, unvalidated). */
export interface ServeFlags {
  host?: string | undefined;
  port?: string | undefined;
  'data-dir'?: string | undefined;
  'body-limit'?: string | undefined;
  'metrics-port'?: string | undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Reads one setting: the flag wins over its env twin, which wins over the default. */
function pick(
  flag: string | undefined,
  flagName: string,
  env: Env,
  envName: EnvVar,
): { value: string; name: string } | undefined {
  if (flag !== undefined) return { value: flag, name: flagName };
  const v = env[envName];
  if (v !== undefined && v !== '') return { value: v, name: envName };
  return undefined;
}

function int(
  setting: { value: string; name: string } | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (!setting) return fallback;
  if (!/^\d+$/.test(setting.value.trim()))
    throw new ConfigError(setting.name, `expected a whole number, got "${setting.value}"`);
  const n = Number(setting.value);
  if (n < min || n > max)
    throw new ConfigError(setting.name, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
}

function num(env: Env, name: EnvVar, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || raw.trim() === '')
    throw new ConfigError(name, `expected a number, got "${raw}"`);
  if (n < min || n > max) throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
}

function oneOf<T extends string>(env: Env, name: EnvVar, values: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${values.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

/** The shortest SCIM token accepted: it is a long-lived credential that can deactivate anyone. */
const SCIM_TOKEN_MIN_LENGTH = 32;

/** AIBRIDGE_SCIM_TOKEN: unset or empty turns SCIM off; a short or whitespace-bearing token stops the start. */
function scimToken(env: Env): string | undefined {
  const raw = env.AIBRIDGE_SCIM_TOKEN;
  if (!raw) return undefined;
  if (!/^[\x21-\x7e]+$/.test(raw))
    throw new ConfigError('AIBRIDGE_SCIM_TOKEN', 'expected printable ASCII without spaces (a bearer token)');
  if (raw.length < SCIM_TOKEN_MIN_LENGTH)
    throw new ConfigError(
      'AIBRIDGE_SCIM_TOKEN',
      `expected at least ${SCIM_TOKEN_MIN_LENGTH} characters (e.g. openssl rand -base64 32)`,
    );
  return raw;
}

/** Shorter metrics tokens are warned of at start (trustWarnings). */
const METRICS_TOKEN_MIN_LENGTH = 16;

/**
 * AIBRIDGE_METRICS_TOKEN without the white space around it (a Kubernetes secret made from a file
 * ends in a newline, which no HTTP header can carry: every scrape would get a 401); one with white
 * space or control characters inside could never be sent either, and stops the start.
 */
function metricsToken(env: Env): string | undefined {
  const raw = env.AIBRIDGE_METRICS_TOKEN?.trim();
  if (!raw) return undefined;
  if (!/^[\x21-\x7e]+$/.test(raw))
    throw new ConfigError(
      'AIBRIDGE_METRICS_TOKEN',
      'expected printable ASCII without spaces (a bearer token)',
    );
  return raw;
}

/** AIBRIDGE_GROUP_TEAMS (a JSON object, group → team) and AIBRIDGE_OIDC_ADMIN_GROUP. */
function groupMapping(env: Env): GroupMapping {
  const raw = env.AIBRIDGE_GROUP_TEAMS;
  let groupTeams: Record<string, string> = {};
  if (raw) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw new ConfigError('AIBRIDGE_GROUP_TEAMS', 'expected a JSON object of group name → team');
    }
    if (
      typeof parsed !== 'object' ||
      parsed === null ||
      Array.isArray(parsed) ||
      !Object.values(parsed).every((t) => typeof t === 'string' && t.length > 0 && t.length <= 128)
    )
      throw new ConfigError(
        'AIBRIDGE_GROUP_TEAMS',
        'expected a JSON object of group name → team (1–128 characters)',
      );
    groupTeams = parsed as Record<string, string>;
  }
  return { groupTeams, adminGroup: env.AIBRIDGE_OIDC_ADMIN_GROUP || undefined, firstGroupIsTeam: !raw };
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const CLAIM_NAME_RE = /^[\w:./-]{1,200}$/;

/**
 * The OIDC settings: everything the relying party needs, checked here so a typo stops the start
 * rather than the first sign-in. The provider itself is contacted lazily (server/sso/oidc-client.ts).
 */
function oidcSettings(env: Env): OidcSettings | undefined {
  const issuerRaw = env.AIBRIDGE_OIDC_ISSUER;
  if (!issuerRaw) {
    if (env.AIBRIDGE_OIDC_CLIENT_ID)
      throw new ConfigError('AIBRIDGE_OIDC_ISSUER', 'required with AIBRIDGE_OIDC_CLIENT_ID');
    return undefined;
  }
  const issuer = url(env, 'AIBRIDGE_OIDC_ISSUER', '');
  const issuerUrl = new URL(issuer);
  // Tokens and keys fetched over plain http could be swapped on the way; only a provider on this machine may use it.
  if (issuerUrl.protocol !== 'https:' && !LOOPBACK_HOSTS.has(issuerUrl.hostname))
    throw new ConfigError('AIBRIDGE_OIDC_ISSUER', 'must be an https URL (http only for localhost)');
  const clientId = env.AIBRIDGE_OIDC_CLIENT_ID?.trim();
  if (!clientId) throw new ConfigError('AIBRIDGE_OIDC_CLIENT_ID', 'required with AIBRIDGE_OIDC_ISSUER');
  const publicUrl = optionalUrl(env, 'AIBRIDGE_PUBLIC_URL');
  if (publicUrl === undefined)
    throw new ConfigError(
      'AIBRIDGE_PUBLIC_URL',
      'required with AIBRIDGE_OIDC_ISSUER: the redirect URI is <AIBRIDGE_PUBLIC_URL>/api/v1/auth/oidc/callback',
    );
  const scopes = (env.AIBRIDGE_OIDC_SCOPES || 'openid email profile').split(/[\s,]+/).filter(Boolean);
  if (!scopes.includes('openid')) throw new ConfigError('AIBRIDGE_OIDC_SCOPES', 'must include openid');
  if (!scopes.every((s) => /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s)))
    throw new ConfigError('AIBRIDGE_OIDC_SCOPES', 'expected scope names separated by spaces');
  const claim = (name: EnvVar, fallback: string): string => {
    const value = env[name]?.trim() || fallback;
    if (!CLAIM_NAME_RE.test(value)) throw new ConfigError(name, `"${value}" is not a claim name`);
    return value;
  };
  const list = (name: EnvVar): string[] =>
    (env[name] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const allowedDomains = list('AIBRIDGE_OIDC_ALLOWED_DOMAINS').map((d) => d.replace(/^@/, '').toLowerCase());
  for (const d of allowedDomains)
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(d))
      throw new ConfigError('AIBRIDGE_OIDC_ALLOWED_DOMAINS', `"${d}" is not a domain name`);
  const displayName = env.AIBRIDGE_OIDC_DISPLAY_NAME?.trim() || issuerUrl.hostname;
  if (displayName.length > 60) throw new ConfigError('AIBRIDGE_OIDC_DISPLAY_NAME', 'at most 60 characters');
  return {
    issuer,
    clientId,
    // Trimmed: a secret read from a file ends in a newline, and the IdP would refuse the client.
    clientSecret: env.AIBRIDGE_OIDC_CLIENT_SECRET?.trim() || undefined,
    scopes,
    redirectUri: `${publicUrl}/api/v1/auth/oidc/callback`,
    emailClaim: claim('AIBRIDGE_OIDC_EMAIL_CLAIM', 'email'),
    requireVerifiedEmail: env.AIBRIDGE_OIDC_REQUIRE_VERIFIED_EMAIL
      ? bool(env, 'AIBRIDGE_OIDC_REQUIRE_VERIFIED_EMAIL')
      : true,
    nameClaim: claim('AIBRIDGE_OIDC_NAME_CLAIM', 'name'),
    groupsClaim: claim('AIBRIDGE_OIDC_GROUPS_CLAIM', 'groups'),
    allowedDomains,
    allowedGroups: list('AIBRIDGE_OIDC_ALLOWED_GROUPS'),
    displayName,
  };
}

/** AIBRIDGE_ADMIN_KEY_SIGNIN (default true); off only when SSO can take its place. */
function adminKeySignIn(env: Env, oidc: OidcSettings | undefined): boolean {
  const on = env.AIBRIDGE_ADMIN_KEY_SIGNIN ? bool(env, 'AIBRIDGE_ADMIN_KEY_SIGNIN') : true;
  if (!on && oidc === undefined)
    throw new ConfigError(
      'AIBRIDGE_ADMIN_KEY_SIGNIN',
      'false needs AIBRIDGE_OIDC_ISSUER: without SSO nobody could sign in to the admin page',
    );
  return on;
}

/** AIBRIDGE_REDACT_PATTERNS: a JSON array of regular expressions, each compiled here so a bad one stops the start. */
function redactPatterns(env: Env): string[] {
  const raw = env.AIBRIDGE_REDACT_PATTERNS;
  if (!raw) return [];
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    throw new ConfigError('AIBRIDGE_REDACT_PATTERNS', 'expected a JSON array of regular expressions');
  }
  if (!Array.isArray(list) || !list.every((p) => typeof p === 'string' && p.length > 0)) {
    throw new ConfigError('AIBRIDGE_REDACT_PATTERNS', 'expected a JSON array of non-empty strings');
  }
  for (const p of list as string[]) {
    try {
      new RegExp(p, 'g');
    } catch (err) {
      throw new ConfigError(
        'AIBRIDGE_REDACT_PATTERNS',
        `"${p}" is not a valid regular expression: ${(err as Error).message}`,
      );
    }
    // Each pattern runs over every prompt a member sends: it must take time linear in the text.
    const problem = patternProblem(p);
    if (problem) throw new ConfigError('AIBRIDGE_REDACT_PATTERNS', `"${p}" ${problem}`);
  }
  return list as string[];
}

function bool(env: Env, name: EnvVar): boolean {
  const raw = (env[name] ?? '').trim().toLowerCase();
  if (raw === '' || raw === 'false' || raw === '0' || raw === 'no') return false;
  if (raw === 'true' || raw === '1' || raw === 'yes') return true;
  throw new ConfigError(name, `expected true or false, got "${env[name]}"`);
}

/** The standard OpenTelemetry variables: a traces endpoint as is, or the base endpoint + /v1/traces. */
function tracingConfig(env: Env): TracingConfig {
  const off = (env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true';
  let traces: string | undefined;
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) traces = url(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', '');
  else if (env.OTEL_EXPORTER_OTLP_ENDPOINT)
    traces = `${url(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', '')}/v1/traces`;
  return {
    url: off ? undefined : traces,
    serviceName: env.OTEL_SERVICE_NAME || 'aibridge',
    capturePrompts: bool(env, 'AIBRIDGE_OTEL_CAPTURE_PROMPTS'),
  };
}

/**
 * AIBRIDGE_KEY_HASH_SECRET as given, refused when it is blank or still a placeholder (the shipped
 * Kubernetes Secret's `CHANGE-ME…`): every key would be hashed under a secret anyone can read.
 */
function keyHashSecret(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.trim() === '' || envSecret(value).length === 0 || /^change-?me/i.test(value.trim()))
    throw new ConfigError(
      'AIBRIDGE_KEY_HASH_SECRET',
      'expected a long random secret (openssl rand -base64 32), or base64url:<the content of a key-hash.secret file>',
    );
  return value;
}

/** AIBRIDGE_MCP_*: the loop's limits, the servers file, and the key that encrypts MCP credentials. */
function mcpSettings(env: Env, dataDir: string): McpSettings {
  const key = env.AIBRIDGE_MCP_CREDENTIALS_KEY || undefined;
  if (key !== undefined && !isValidKey(key))
    throw new ConfigError(
      'AIBRIDGE_MCP_CREDENTIALS_KEY',
      'expected 32 bytes in base64 (openssl rand -base64 32)',
    );
  const setting = (name: EnvVar) => pick(undefined, '', env, name);
  return {
    configFile: path.resolve(env.AIBRIDGE_MCP_CONFIG || path.join(dataDir, 'mcp-servers.json')),
    credentialsKey: key?.trim(),
    maxRounds: int(setting('AIBRIDGE_MCP_MAX_ROUNDS'), 8, 2, 100),
    callTimeoutMs: int(setting('AIBRIDGE_MCP_CALL_TIMEOUT_MS'), 30_000, 1, 3_600_000),
    gatewayCallTimeoutMs: int(setting('AIBRIDGE_MCP_GATEWAY_CALL_TIMEOUT_MS'), 120_000, 1, 3_600_000),
    gatewayCallsPerUser: int(setting('AIBRIDGE_MCP_GATEWAY_CALLS_PER_USER'), 16, 0, 100_000),
    connectTimeoutMs: int(setting('AIBRIDGE_MCP_CONNECT_TIMEOUT_MS'), 10_000, 1, 600_000),
    refreshMs: int(setting('AIBRIDGE_MCP_REFRESH_MS'), 300_000, 1000, 86_400_000),
    resultLimit: int(setting('AIBRIDGE_MCP_RESULT_LIMIT'), 100_000, 100, 10_000_000),
    idleMs: int(setting('AIBRIDGE_MCP_IDLE_MS'), 600_000, 1000, 86_400_000),
    apiStdio: bool(env, 'AIBRIDGE_MCP_API_STDIO'),
    publicUrl: optionalUrl(env, 'AIBRIDGE_PUBLIC_URL'),
    injectSkipClients: clientList(env, 'AIBRIDGE_MCP_INJECT_SKIP_CLIENTS', ['vscode-chat']),
  };
}

/** A comma-separated list of client names (as `detectClient` names them); unset: `fallback`, empty: none. */
function clientList(env: Env, name: EnvVar, fallback: readonly string[]): readonly string[] {
  const raw = env[name];
  if (raw === undefined) return fallback;
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names)
    if (!/^[a-z0-9-]{1,40}$/.test(n))
      throw new ConfigError(name, `"${n}" is not a client name (such as vscode-chat)`);
  return names;
}

function optionalUrl(env: Env, name: EnvVar): string | undefined {
  return env[name] ? url(env, name, '') : undefined;
}

function url(env: Env, name: EnvVar, fallback: string): string {
  const raw = env[name] || fallback;
  let parsed: URL;
  // The value is not echoed: a webhook's path or a URL's password is the secret itself.
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'expected an http(s) URL, starting with http:// or https://');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError(name, `expected an http(s) URL, got a ${parsed.protocol} one`);
  }
  if (parsed.search || parsed.hash) throw new ConfigError(name, 'must not have a query string or fragment');
  return raw.replace(/\/+$/, '');
}

/**
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY (each also lower-case, which wins). A proxy without a scheme
 * (`proxy.corp:3128`) is `http://`, as curl takes it. The value is never echoed back: it may hold
 * the proxy's password.
 */
export function egressProxy(env: Env): EgressProxy | undefined {
  const proxyUrl = (lower: 'https_proxy' | 'http_proxy', upper: 'HTTPS_PROXY' | 'HTTP_PROXY') => {
    // An empty lower-case variable is unset, as for curl: `ENV https_proxy=$https_proxy` in a
    // Dockerfile leaves one, and it must not turn off the upper-case proxy.
    const name = env[lower]?.trim() ? lower : upper;
    const raw = env[name]?.trim();
    if (!raw) return undefined;
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
    const example =
      'expected a proxy URL such as http://proxy.example.com:3128 (the value is not shown: it may hold a password)';
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new ConfigError(name, example);
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '')
      throw new ConfigError(name, `${example}; only http:// and https:// proxies are supported`);
    if ((u.pathname !== '' && u.pathname !== '/') || u.search || u.hash)
      throw new ConfigError(name, `${example}, without a path or query`);
    try {
      decodeURIComponent(u.username);
      decodeURIComponent(u.password);
    } catch {
      throw new ConfigError(name, `${example}; percent-encode a "%" in its user or password as %25`);
    }
    return u.href.replace(/\/$/, '');
  };
  const httpsProxy = proxyUrl('https_proxy', 'HTTPS_PROXY');
  const httpProxy = proxyUrl('http_proxy', 'HTTP_PROXY');
  if (httpsProxy === undefined && httpProxy === undefined) return undefined;
  const noProxy = (env.no_proxy?.trim() ? env.no_proxy : (env.NO_PROXY ?? '')).trim();
  return { httpsProxy, httpProxy, noProxy };
}

/** AIBRIDGE_DATABASE_URL: postgres://user:password@host:port/database (the password is never echoed back). */
export function databaseUrl(env: Env): string | undefined {
  const raw = env.AIBRIDGE_DATABASE_URL;
  if (!raw) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError('AIBRIDGE_DATABASE_URL', 'expected a postgres:// URL');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:')
    throw new ConfigError(
      'AIBRIDGE_DATABASE_URL',
      `expected a postgres:// URL, got a ${parsed.protocol} URL`,
    );
  return raw;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function trustedProxies(env: Env): string[] {
  const raw = env.AIBRIDGE_TRUSTED_PROXIES;
  if (!raw) return [];
  try {
    return parseTrustedProxies(raw);
  } catch (err) {
    throw new ConfigError('AIBRIDGE_TRUSTED_PROXIES', (err as Error).message);
  }
}

function clientLimits(env: Env): ClientLimits {
  const setting = (name: EnvVar) => pick(undefined, '', env, name);
  return {
    headersTimeoutMs: int(setting('AIBRIDGE_REQUEST_HEADERS_TIMEOUT_MS'), 10_000, 1, 600_000),
    bodyTimeoutMs: int(setting('AIBRIDGE_REQUEST_BODY_TIMEOUT_MS'), 60_000, 0, 3_600_000),
    connectionsPerAddress: int(setting('AIBRIDGE_CONNECTIONS_PER_ADDRESS'), 256, 0, 1_000_000),
    trustedProxies: trustedProxies(env),
    maxJsonDepth: int(setting('AIBRIDGE_MAX_JSON_DEPTH'), 128, 8, 100_000),
    maxJsonContainers: int(setting('AIBRIDGE_MAX_JSON_CONTAINERS'), 250_000, 1_000, 100_000_000),
    liveSocketsPerUser: int(setting('AIBRIDGE_LIVE_SOCKETS_PER_USER'), 32, 1, 100_000),
    liveSocketsPerKey: int(setting('AIBRIDGE_LIVE_SOCKETS_PER_KEY'), 16, 1, 100_000),
    adminSessionsPerKey: int(setting('AIBRIDGE_ADMIN_SESSIONS_PER_KEY'), 20, 1, 10_000),
    keysPerUser: int(setting('AIBRIDGE_KEYS_PER_USER'), 100, 1, 100_000),
    bodyBytesInFlight: int(
      setting('AIBRIDGE_BODY_BYTES_IN_FLIGHT'),
      512 * 1024 * 1024,
      0,
      64 * 1024 * 1024 * 1024,
    ),
    requestsInFlightPerUser: int(setting('AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER'), 64, 0, 1_000_000),
  };
}

function isEnvVar(name: string): name is EnvVar {
  return (ENV_VARS as readonly string[]).includes(name);
}

/**
 * The provider instances: each family's built-in one from the variables it declares, then
 * AIBRIDGE_PROVIDERS_FILE's. An `apiKey: {"fromEnv": "VAR"}` names a variable of the operator's
 * choosing, read here too, so this file stays the only reader of the environment.
 */
function upstreams(env: Env, json: unknown): Readonly<Record<string, UpstreamConfig>> {
  const urlVars = new Set<string>();
  for (const f of allFamilies()) {
    if (!f.env) continue;
    for (const v of [f.env.baseUrl, f.env.apiKey])
      if (!isEnvVar(v)) throw new Error(`provider family ${f.type} reads ${v}, which is not in ENV_VARS`);
    urlVars.add(f.env.baseUrl);
  }
  const read = (name: string): string | undefined => {
    if (isEnvVar(name)) return urlVars.has(name) ? optionalUrl(env, name) : env[name] || undefined;
    return (env as Readonly<Record<string, string | undefined>>)[name] || undefined;
  };
  return fromProvidersFile(() => providerInstances(read, json));
}

/** AIBRIDGE_PROVIDERS_FILE as JSON; undefined without one. */
function providersFile(env: Env): unknown {
  const file = env.AIBRIDGE_PROVIDERS_FILE;
  if (!file) return undefined;
  try {
    const text = readFileSync(path.resolve(file), 'utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // JSON.parse quotes the text around the fault, which can be a key: only where it is.
      // (Newer nodes say where: `at position 12`, or `(line 1 column 13)`.)
      const at = /position (\d+)/.exec((err as Error).message);
      const before = at ? text.slice(0, Number(at[1])) : undefined;
      const where =
        before === undefined
          ? ''
          : ` at line ${before.split('\n').length}, column ${before.length - before.lastIndexOf('\n')}`;
      throw new Error(`it is not valid JSON${where}`);
    }
    // JSON keeps the last of a name given twice: a second instance, route or alias under a name
    // already used would replace the first without a word.
    const twice = duplicateKey(text);
    if (twice)
      throw new Error(
        `${twice.path} is named twice (line ${twice.line}): JSON keeps only the last; give each its own name`,
      );
    return parsed;
  } catch (err) {
    throw new ConfigError(
      'AIBRIDGE_PROVIDERS_FILE',
      `cannot read ${file} as JSON: ${(err as Error).message}`,
    );
  }
}

/** A part of the providers file, read; its problems name the file's variable. */
function fromProvidersFile<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ProvidersFileError || err instanceof RouteTableError)
      throw new ConfigError('AIBRIDGE_PROVIDERS_FILE', err.message);
    throw err;
  }
}

/**
 * `AIBRIDGE_*` variables the bridge does not read, as warnings for the log at start: a mistyped
 * name (an `…_API_KEY` written `…_APIKEY`) is otherwise silently ignored, and the bridge runs
 * without the setting. Variables a providers file names (`{"fromEnv": …}`) are the operator's own, not typos.
 */
export function unknownEnvWarnings(env: Readonly<Record<string, string | undefined>>): string[] {
  const known = new Set<string>(ENV_VARS);
  let fileNames: Set<string>;
  try {
    fileNames = new Set(fromEnvNames(providersFile(env as Env)));
  } catch {
    fileNames = new Set();
  }
  const out: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('AIBRIDGE_') || known.has(name) || fileNames.has(name) || CLIENT_VARS.has(name))
      continue;
    const near = nearestName(name, ENV_VARS);
    out.push(
      `${name} is not a setting the bridge reads and is ignored${near ? `: did you mean ${near}?` : ''}`,
    );
  }
  return out;
}

/**
 * A trusted-proxy range that is every address (`0.0.0.0/0`, `::/0`): accepted, since a bridge only a
 * proxy can reach may mean it, but then any client that reaches the bridge can name itself in
 * `X-Forwarded-For`, and the per-address limits and the bad-key throttle count what it says. And a
 * metrics token short enough to guess: accepted, since refusing it would stop a running deployment.
 */
export function trustWarnings(config: Config): string[] {
  const out: string[] = [];
  const all = config.limits.trustedProxies.filter((p) => /\/0$/.test(p.trim()));
  if (all.length > 0)
    out.push(
      `AIBRIDGE_TRUSTED_PROXIES trusts every address (${all.join(', ')}): any client that reaches the bridge can name itself in X-Forwarded-For, stepping around the per-address connection limit and the bad-key throttle. List your proxies' addresses, unless only they can reach the bridge.`,
    );
  if (config.metricsToken !== undefined && config.metricsToken.length < METRICS_TOKEN_MIN_LENGTH)
    out.push(
      `AIBRIDGE_METRICS_TOKEN is shorter than ${METRICS_TOKEN_MIN_LENGTH} characters: /metrics shows your models, pool keys, MCP tools and spend, and a short token can be guessed. Use a random one (e.g. openssl rand -base64 32).`,
    );
  return out;
}

/**
 * Settings that let the bridge hold more request bodies than V8's heap can (bodies take two to
 * three times their size while held), as warnings for the log at start: allowed traffic would end
 * the process in an out-of-memory crash rather than be refused with 503.
 */
export function heapWarnings(
  config: Config,
  env: Env,
  heapLimitBytes = getHeapStatistics().heap_size_limit,
): string[] {
  const inFlight = config.limits.bodyBytesInFlight;
  const mib = (n: number): string => `${Math.round(n / 1024 / 1024)} MiB`;
  const heap = `V8's heap limit (${mib(heapLimitBytes)})`;
  const raise = 'raise the heap (node --max-old-space-size)';
  if (inFlight === 0)
    return [
      `AIBRIDGE_BODY_BYTES_IN_FLIGHT=0 (no limit) lets request bodies take more than ${heap} holds: set a limit, ${mib(Math.floor(heapLimitBytes / 3))} or less`,
    ];
  if (inFlight * 2.5 <= heapLimitBytes) return [];
  // Not set, the default was raised to the body limit; set, it cannot go under it: either way,
  // when one body alone is past what the heap holds, the body limit is what to lower.
  if (!env.AIBRIDGE_BODY_BYTES_IN_FLIGHT || config.bodyLimit * 2.5 > heapLimitBytes)
    return [
      `the body limit (--body-limit, AIBRIDGE_BODY_LIMIT: ${mib(config.bodyLimit)}) is more than a third of ${heap}: a request that large can end the process in an out-of-memory crash; lower it, or ${raise}`,
    ];
  return [
    `request bodies held at once (AIBRIDGE_BODY_BYTES_IN_FLIGHT, ${mib(inFlight)}) can take more than ${heap} holds: lower it to ${mib(Math.max(config.bodyLimit, Math.floor(heapLimitBytes / 3)))} or less, or ${raise}`,
  ];
}

/** Whether AIBRIDGE_LOG_LEVEL asks for debug detail (a start-up failure's stack trace). */
export function debugLogging(env: Env): boolean {
  return /^(debug|trace)$/i.test(env.AIBRIDGE_LOG_LEVEL ?? '');
}

/**
 * Variables the docs have users set for the bridge's clients, not for the bridge (the extension's
 * and provisioners' key), often in the same shell: not typos. Named by suffix, as the bridge never
 * reads them (config-doc.test lists every AIBRIDGE_ name written out here as one it reads).
 */
const CLIENT_VARS: ReadonlySet<string> = new Set(['KEY', 'PROVISIONER'].map((n) => `AIBRIDGE_${n}`));

/** Every `fromEnv` variable a providers file names. */
function fromEnvNames(json: unknown): string[] {
  if (Array.isArray(json)) return json.flatMap(fromEnvNames);
  if (json === null || typeof json !== 'object') return [];
  return Object.entries(json).flatMap(([k, v]) =>
    k === 'fromEnv' && typeof v === 'string' ? [v] : fromEnvNames(v),
  );
}

/**
 * Base URLs that are valid but almost certainly mistaken, as warnings for the log at start: the
 * provider's 404 for `/v1/v1/messages` or `/responses` says nothing of the setting behind it.
 */
export function baseUrlWarnings(env: Env): string[] {
  const out: string[] = [];
  const path = (
    name: 'AIBRIDGE_ANTHROPIC_BASE_URL' | 'AIBRIDGE_OPENAI_BASE_URL' | 'AIBRIDGE_GEMINI_BASE_URL',
  ): string | undefined => {
    const v = env[name];
    if (!v) return undefined;
    try {
      return new URL(v).pathname.replace(/\/+$/, '');
    } catch {
      return undefined;
    }
  };
  if (path('AIBRIDGE_ANTHROPIC_BASE_URL')?.endsWith('/v1'))
    out.push(
      'AIBRIDGE_ANTHROPIC_BASE_URL ends in /v1, so requests go to …/v1/v1/messages: Anthropic base URLs have no /v1 (https://api.anthropic.com).',
    );
  if (path('AIBRIDGE_OPENAI_BASE_URL') === '')
    out.push(
      'AIBRIDGE_OPENAI_BASE_URL has no path, so requests go to …/responses and …/chat/completions: OpenAI base URLs end in /v1 (https://api.openai.com/v1).',
    );
  if (/\/v1(beta|alpha)?$/.test(path('AIBRIDGE_GEMINI_BASE_URL') ?? ''))
    out.push(
      'AIBRIDGE_GEMINI_BASE_URL ends in an API version, so requests go to …/v1beta/v1beta/models/…: the Gemini base URL has none (https://generativelanguage.googleapis.com).',
    );
  return out;
}

/** AIBRIDGE_AUDIT_SYNC_MS when records are acked `sent` (docs/performance.md#group-commit). */
export const DEFAULT_AUDIT_SYNC_MS = 10;

/** Builds the one validated, frozen config the server runs with. Throws ConfigError naming the bad setting. */
export function loadConfig(
  flags: ServeFlags,
  env: Env,
  /** V8's heap limit, which bounds what request bodies the process can hold at once. */
  heapLimitBytes = getHeapStatistics().heap_size_limit,
): Config {
  const providersJson = providersFile(env);
  const upstreamsConfig = upstreams(env, providersJson);
  const host = pick(flags.host, '--host', env, 'AIBRIDGE_HOST')?.value ?? '127.0.0.1';
  if (!/^[\w.:-]+$/.test(host))
    throw new ConfigError(flags.host ? '--host' : 'AIBRIDGE_HOST', `"${host}" is not a host name or address`);
  // A colon belongs to an IPv6 address; `localhost:7410` is a host and a port, and the port is its own setting.
  if (host.includes(':') && !isIPv6(host))
    throw new ConfigError(
      flags.host ? '--host' : 'AIBRIDGE_HOST',
      `"${host}" is not a host name or address (the port is --port, AIBRIDGE_PORT)`,
    );
  const port = int(pick(flags.port, '--port', env, 'AIBRIDGE_PORT'), 7410, 0, 65535);
  const dataDir = path.resolve(
    pick(flags['data-dir'], '--data-dir', env, 'AIBRIDGE_DATA_DIR')?.value ?? '.aibridge',
  );
  const adminEmail = env.AIBRIDGE_ADMIN_EMAIL || 'admin@localhost';
  const oidc = oidcSettings(env);
  const deviceKeyDays = int(pick(undefined, '', env, 'AIBRIDGE_DEVICE_KEY_DAYS'), 7, 1, 90);
  const deviceKeyMaxDays = int(pick(undefined, '', env, 'AIBRIDGE_DEVICE_KEY_MAX_DAYS'), 30, 0, 3650);
  if (deviceKeyMaxDays !== 0 && deviceKeyMaxDays < deviceKeyDays)
    throw new ConfigError(
      'AIBRIDGE_DEVICE_KEY_MAX_DAYS',
      `expected 0 or at least AIBRIDGE_DEVICE_KEY_DAYS (${deviceKeyDays}), got ${deviceKeyMaxDays}`,
    );
  if (!/^[^\s@]+@[^\s@]+$/.test(adminEmail))
    throw new ConfigError('AIBRIDGE_ADMIN_EMAIL', `"${adminEmail}" is not an email address`);
  const level = (env.AIBRIDGE_LOG_LEVEL || 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError('AIBRIDGE_LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  }
  const auditAck = oneOf(
    env,
    'AIBRIDGE_AUDIT_ACK',
    ['stored', 'sent'] as const,
    databaseUrl(env) !== undefined ? 'stored' : 'sent',
  );
  const config: Config = {
    host,
    port,
    dataDir,
    adminEmail,
    logLevel: level as Config['logLevel'],
    bodyLimit: int(
      pick(flags['body-limit'], '--body-limit', env, 'AIBRIDGE_BODY_LIMIT'),
      32 * 1024 * 1024,
      1024,
      1024 ** 3,
    ),
    shutdownGraceMs: int(pick(undefined, '', env, 'AIBRIDGE_SHUTDOWN_GRACE_MS'), 30_000, 0, 3_600_000),
    timeouts: {
      connectMs: int(pick(undefined, '', env, 'AIBRIDGE_CONNECT_TIMEOUT_MS'), 10_000, 1, 600_000),
      headersMs: int(pick(undefined, '', env, 'AIBRIDGE_HEADERS_TIMEOUT_MS'), 600_000, 1, 3_600_000),
      idleMs: int(pick(undefined, '', env, 'AIBRIDGE_IDLE_TIMEOUT_MS'), 300_000, 1, 3_600_000),
    },
    egressProxy: egressProxy(env),
    breaker: {
      threshold: int(pick(undefined, '', env, 'AIBRIDGE_BREAKER_THRESHOLD'), 5, 0, 1000),
      cooldownMs: int(pick(undefined, '', env, 'AIBRIDGE_BREAKER_COOLDOWN_MS'), 30_000, 1, 3_600_000),
    },
    upstreams: upstreamsConfig,
    byok: { teams: fromProvidersFile(() => byokTeams(providersJson)) },
    aliases: fromProvidersFile(() => fileAliases(providersJson)),
    routes: fromProvidersFile(() =>
      parseRoutes(
        typeof providersJson === 'object' && providersJson !== null
          ? (providersJson as { routes?: unknown }).routes
          : undefined,
        new Set(Object.keys(upstreamsConfig)),
      ),
    ),
    spend: {
      pricesFile: env.AIBRIDGE_PRICES_FILE ? path.resolve(env.AIBRIDGE_PRICES_FILE) : undefined,
      defaultMaxOutputTokens: int(
        pick(undefined, '', env, 'AIBRIDGE_BUDGET_DEFAULT_MAX_TOKENS'),
        4096,
        1,
        10_000_000,
      ),
      requestFloorUsd: num(env, 'AIBRIDGE_BUDGET_REQUEST_FLOOR_USD', 0.25, 0, 1000),
      unpricedModels: oneOf(env, 'AIBRIDGE_UNPRICED_MODELS', ['allow', 'block'] as const, 'allow'),
      defaultRpm: int(pick(undefined, '', env, 'AIBRIDGE_RATE_LIMIT_RPM'), 0, 0, 1_000_000),
      defaultTpm: int(pick(undefined, '', env, 'AIBRIDGE_RATE_LIMIT_TPM'), 0, 0, 1_000_000_000),
    },
    alerts: {
      webhookUrl: optionalUrl(env, 'AIBRIDGE_ALERT_WEBHOOK_URL'),
      webhookAttempts: int(pick(undefined, '', env, 'AIBRIDGE_ALERT_WEBHOOK_ATTEMPTS'), 6, 1, 100),
      webhookBackoffMs: int(
        pick(undefined, '', env, 'AIBRIDGE_ALERT_WEBHOOK_BACKOFF_MS'),
        1000,
        1,
        3_600_000,
      ),
      anomalyFactor: num(env, 'AIBRIDGE_ANOMALY_FACTOR', 5, 1, 1000),
      anomalyMinUsd: num(env, 'AIBRIDGE_ANOMALY_MIN_USD', 1, 0, 1_000_000),
      anomalyMinTokens: int(pick(undefined, '', env, 'AIBRIDGE_ANOMALY_MIN_TOKENS'), 500_000, 0, 1e12),
      burstRpm: int(pick(undefined, '', env, 'AIBRIDGE_BURST_RPM'), 120, 0, 1_000_000),
    },
    metricsToken: metricsToken(env),
    keyHashSecret: keyHashSecret(env.AIBRIDGE_KEY_HASH_SECRET),
    metricsPort: pick(flags['metrics-port'], '--metrics-port', env, 'AIBRIDGE_METRICS_PORT')
      ? int(pick(flags['metrics-port'], '--metrics-port', env, 'AIBRIDGE_METRICS_PORT'), 0, 0, 65535)
      : undefined,
    metricsHost: env.AIBRIDGE_METRICS_HOST || host,
    metricsPerUser: bool(env, 'AIBRIDGE_METRICS_PER_USER'),
    auditQueueLimit: int(pick(undefined, '', env, 'AIBRIDGE_AUDIT_QUEUE_LIMIT'), 10_000, 1, 10_000_000),
    redactPatterns: redactPatterns(env),
    auditCapture: oneOf(env, 'AIBRIDGE_AUDIT_CAPTURE', ['none', 'prompt', 'full'] as const, 'prompt'),
    auditRetentionDays: int(pick(undefined, '', env, 'AIBRIDGE_AUDIT_RETENTION_DAYS'), 0, 0, 100_000),
    auditFailure: oneOf(env, 'AIBRIDGE_AUDIT_FAILURE', ['closed', 'open'] as const, 'closed'),
    auditAck,
    auditSyncMs: int(
      pick(undefined, '', env, 'AIBRIDGE_AUDIT_SYNC_MS'),
      auditAck === 'sent' ? DEFAULT_AUDIT_SYNC_MS : 0,
      0,
      1000,
    ),
    authFailuresPerMinute: int(
      pick(undefined, '', env, 'AIBRIDGE_AUTH_FAILURES_PER_MINUTE'),
      30,
      0,
      1_000_000,
    ),
    adminSessionHours: int(pick(undefined, '', env, 'AIBRIDGE_ADMIN_SESSION_HOURS'), 12, 1, 720),
    deviceKeyDays,
    deviceKeyMaxDays,
    limits: clientLimits(env),
    groups: groupMapping(env),
    oidc,
    adminKeySignIn: adminKeySignIn(env, oidc),
    scimToken: scimToken(env),
    tracing: tracingConfig(env),
    mcp: mcpSettings(env, dataDir),
    databaseUrl: databaseUrl(env),
  };
  // Bodies take two to three times their size in heap while held (bytes, parsed, what goes
  // upstream): a default past a third of the heap let allowed traffic end the process in V8's
  // out-of-memory crash, every stream of every user with it, where the budget answers 503.
  if (!env.AIBRIDGE_BODY_BYTES_IN_FLIGHT)
    (config.limits as { bodyBytesInFlight: number }).bodyBytesInFlight = Math.min(
      config.limits.bodyBytesInFlight,
      Math.max(config.bodyLimit, Math.floor(heapLimitBytes / 3)),
    );
  const inFlight = config.limits.bodyBytesInFlight;
  // A body the budget could never hold would be refused as "busy" forever, and retried.
  if (inFlight !== 0 && inFlight < config.bodyLimit)
    throw new ConfigError(
      'AIBRIDGE_BODY_BYTES_IN_FLIGHT',
      `must be 0 or at least the body limit (${config.bodyLimit} bytes, AIBRIDGE_BODY_LIMIT / --body-limit)`,
    );
  return deepFreeze(config);
}

/** What the admin CLI (`aibridge users|keys|audit`, docs/cli.md) takes from the environment, before its flags. */
export interface AdminClientEnv {
  readonly url: string | undefined;
  readonly adminKey: string | undefined;
  readonly port: string | undefined;
  readonly dataDir: string | undefined;
  /** Where `aibridge login` writes the device key: $XDG_CONFIG_HOME/aibridge, else ~/.config/aibridge. */
  readonly configHome: string | undefined;
}

export function adminClientEnv(env: Env): AdminClientEnv {
  return {
    url: env.AIBRIDGE_URL,
    adminKey: env.AIBRIDGE_ADMIN_KEY,
    port: env.AIBRIDGE_PORT,
    dataDir: env.AIBRIDGE_DATA_DIR,
    configHome: env.XDG_CONFIG_HOME || undefined,
  };
}
