import { Agent, type Dispatcher, EnvHttpProxyAgent, Pool } from 'undici';
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
    noProxy: proxy.noProxy,
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
  });
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
  return proxy.noProxy
    .split(/[,\s]+/)
    .filter((e) => e.includes('/'))
    .map(
      (e) =>
        `NO_PROXY entry "${e}" is a CIDR range, which the bridge does not match: list the hosts or domains to reach direct`,
    );
}
