import { Agent, type buildConnector, type Dispatcher, EnvHttpProxyAgent, Pool } from 'undici';
import type { EgressProxy } from '../config';

/** What an outbound pool is built with, besides where it sends. */
export type PoolOptions = Pick<Agent.Options, 'headersTimeout' | 'bodyTimeout' | 'keepAliveTimeout'> & {
  /** How long a TCP (and TLS) connection may take; through a proxy, also its answer to CONNECT. */
  connectMs?: number;
};

/**
 * The dispatcher for the bridge's outbound calls: a plain pool, or with an egress proxy one that
 * sends each destination through the proxy its scheme names unless NO_PROXY lists it. Built only
 * when a proxy is set, so a bridge without one pays nothing per request for the choice.
 */
export function outboundDispatcher(proxy: EgressProxy | undefined, o: PoolOptions = {}): Dispatcher {
  const { connectMs, ...pool } = o;
  const connect = connectMs === undefined ? {} : { connect: { timeout: connectMs } };
  if (!proxy) return new Agent({ ...pool, ...connect });
  const tls = connectMs === undefined ? {} : { timeout: connectMs };
  return new EnvHttpProxyAgent({
    ...pool,
    ...connect,
    // Given, never left to undici's own reading of the environment: what config.ts read and
    // checked at start is what is used, and an empty value means none.
    httpProxy: proxy.httpProxy ?? '',
    httpsProxy: proxy.httpsProxy ?? '',
    // Through a proxy undici's connect timeout does not reach the two connections it makes: to the
    // proxy (and its TLS), and the TLS inside the tunnel. A proxy that takes the connection and
    // never answers CONNECT is bounded by the same timeout as the answer's first line.
    proxyTls: tls,
    requestTls: tls,
    ...(connectMs === undefined
      ? {}
      : {
          clientFactory: (origin: URL, opts: object) =>
            new Pool(origin, { ...opts, headersTimeout: connectMs }),
        }),
    factory: (origin: string | URL, opts: object) => {
      const { connect: c } = opts as { connect?: unknown };
      return new Pool(
        origin,
        typeof c === 'function' ? { ...opts, connect: closedIsFinal(c as Connector) } : opts,
      );
    },
    noProxy: undiciNoProxy(proxy.noProxy),
  });
}

type Connector = (options: buildConnector.Options, callback: buildConnector.Callback) => void;

/** The egress proxy ended the connection before it answered CONNECT. */
export class EgressProxyClosedError extends Error {
  readonly code = 'EGRESS_PROXY_CLOSED';
  constructor(cause: Error) {
    super('the egress proxy closed the connection before it answered CONNECT', { cause });
    this.name = 'EgressProxyClosedError';
  }
}

/**
 * undici takes a connection its peer closed (`UND_ERR_SOCKET`) for a passing failure and, with no
 * request running yet, keeps the waiting ones and connects again at once. Through a proxy that
 * closes before answering CONNECT (a TLS-only port given as http://, a proxy with no backend) that
 * was thousands of connections a second, for ever, and the request never answered: here it fails
 * the requests waiting for that connection, as a refused connection does.
 */
function closedIsFinal(connect: Connector): Connector {
  return (options, callback) =>
    connect(options, (...args) => {
      const [err] = args;
      if (err && (err as { code?: string }).code === 'UND_ERR_SOCKET')
        callback(new EgressProxyClosedError(err), null);
      else callback(...args);
    });
}

/**
 * NO_PROXY as undici matches it: a bare IPv6 address (`::1`, `fd00::1`) would be read as a host
 * and a port and match nothing, so it is bracketed as undici writes an IPv6 host (`[::1]`).
 */
export function undiciNoProxy(noProxy: string): string {
  return noProxyEntries(noProxy)
    .map((e) => (!e.startsWith('[') && (e.match(/:/g)?.length ?? 0) >= 2 ? `[${e}]` : e))
    .join(',');
}

/**
 * The proxy settings as environment variables, both spellings, for the processes the bridge starts
 * (stdio MCP servers): what reaches the network through them goes the organisation's way too.
 */
export function proxyEnv(proxy: EgressProxy | undefined): Record<string, string> {
  if (!proxy) return {};
  const env: Record<string, string> = {};
  const set = (upper: string, value: string | undefined): void => {
    if (value === undefined || value === '') return;
    env[upper] = value;
    env[upper.toLowerCase()] = value;
  };
  set('HTTPS_PROXY', proxy.httpsProxy);
  set('HTTP_PROXY', proxy.httpProxy);
  set('NO_PROXY', proxy.noProxy);
  return env;
}

/** The proxy settings as a log line may show them: a proxy's user and password replaced. */
export function describeEgress(proxy: EgressProxy): Record<string, string> {
  const hide = (u: string | undefined): string => {
    if (u === undefined) return 'none (direct)';
    const url = new URL(u);
    if (url.username || url.password) {
      url.username = '***';
      url.password = '';
    }
    return url.href.replace(/\/$/, '');
  };
  return { https: hide(proxy.httpsProxy), http: hide(proxy.httpProxy), noProxy: proxy.noProxy || '(none)' };
}

/**
 * NO_PROXY entries the bridge cannot honour, as warnings for the log at start: a CIDR range
 * (`10.0.0.0/8`) is written for other tools and matches no host here, so what it meant to keep
 * direct would go through the proxy.
 */
export function noProxyWarnings(proxy: EgressProxy): string[] {
  return noProxyEntries(proxy.noProxy)
    .filter((e) => e.includes('/'))
    .map(
      (e) =>
        `NO_PROXY entry "${e}" is a CIDR range, which the bridge does not match: list the hosts or domains to reach direct`,
    );
}

/** NO_PROXY's entries: separated by commas or white space, as undici and curl split them. */
function noProxyEntries(noProxy: string): string[] {
  return noProxy.split(/[,\s]+/).filter(Boolean);
}
