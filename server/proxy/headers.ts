import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1) and framing the bridge recomputes. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  'content-length',
  'http2-settings',
  // The bridge has the whole body before it sends (node answers a client's `100-continue`), and
  // undici refuses the header outright: forwarded, every such request failed before it left.
  'expect',
]);

/** The client's credentials for the bridge: never forwarded, only the organisation's key is. */
const CLIENT_CREDENTIALS = new Set([
  'authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'cookie',
  'proxy-authorization',
  'proxy-authenticate',
]);

/**
 * Headers that would take the answer or its bill out of the bridge's hands: Google's field mask
 * can leave usage out of the answer (recorded as free), and a client's choice of the OpenAI
 * organisation or project, or of the Google project billed, would put its spend on another
 * account than the one the organisation configured for the key. Vertex's request type chooses
 * Priority PayGo (billed above the standard prices the bridge charges, as OpenAI's
 * `service_tier: "priority"`, which is refused) or Flex: the standard tier is what is priced.
 */
const GOVERNED = new Set([
  'x-goog-fieldmask',
  'x-goog-user-project',
  'x-vertex-ai-llm-shared-request-type',
  'openai-organization',
  'openai-project',
]);

/**
 * Provider system parameters and alternative credentials a client could set by header, which the
 * bridge's own request must decide: Google reads a deadline (`X-Server-Timeout`, whose 504 would
 * count against the target's circuit breaker), a method override, routing and IAM parameters from
 * `X-Goog-*` headers as well as from the query (which takes an allow-list: gemini/query.ts); Azure
 * API Management reads a subscription key (`Ocp-Apim-Subscription-Key`, whose 401 would put every
 * key of a pool out of use); AWS and Azure ML read their own `x-amz-*`, `azureml-*` and `x-ms-*`.
 * `X-Goog-Api-Client` (the SDK's name and version) is what Google's SDKs send with every call, and
 * goes through. So are what proxies say about a request (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`)
 * and the original-URL headers IIS and some frameworks rewrite a request's path by
 * (`X-Original-URL`, `X-Rewrite-URL`): the bridge is the client here, and a self-hosted
 * OpenAI-compatible server behind such middleware would serve the path a member wrote there instead
 * of the one the bridge allowed and metered.
 */
const SYSTEM_PARAMETER =
  /^(?:x-goog-(?!api-client$)|x-vertex-ai-|x-server-timeout$|x-http-method|x-method-override$|ocp-apim-|x-amzn?-|azureml-|x-ms-|forwarded$|x-forwarded-|x-real-ip$|x-original-url$|x-rewrite-url$|x-original-uri$|x-client-ip$|true-client-ip$)/;

const NO_TOKENS: ReadonlySet<string> = new Set();
/** The last `Connection` value parsed and its tokens: clients send the same one (`keep-alive`) every time. */
let lastConnection = '';
let lastTokens: ReadonlySet<string> = NO_TOKENS;

function connectionTokens(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const c = headers.connection;
  const v = Array.isArray(c) ? c.join(',') : (c ?? '');
  if (v === '') return NO_TOKENS;
  if (v === lastConnection) return lastTokens;
  const tokens: ReadonlySet<string> = new Set(
    v
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
  lastConnection = v;
  lastTokens = tokens;
  return tokens;
}

/** Client request headers as they go upstream, before the adapter adds the upstream key. */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(headers);
  const out: Record<string, string | string[]> = {};
  // `for…in` rather than Object.entries: no array per header on every request. Node's header
  // objects have no inherited enumerable keys.
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (
      HOP_BY_HOP.has(name) ||
      CLIENT_CREDENTIALS.has(name) ||
      GOVERNED.has(name) ||
      named.has(name) ||
      name.startsWith('proxy-') ||
      // `x-aibridge-client`, `x-aibridge-session-id`: meant for the bridge, not the provider.
      name.startsWith('x-aibridge-') ||
      SYSTEM_PARAMETER.test(name)
    )
      continue;
    out[name] = value;
  }
  // The bridge reads usage from the bytes it relays, so it asks for them uncompressed.
  out['accept-encoding'] = 'identity';
  return out;
}

/** Upstream response headers as they go to the client. */
export function clientResponseHeaders(
  headers: IncomingHttpHeaders,
  keepLength: boolean,
): OutgoingHttpHeaders {
  const named = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'content-length' && keepLength) {
      out[name] = Array.isArray(value) ? value[0] : value;
      continue;
    }
    if (HOP_BY_HOP.has(name) || named.has(name) || name.startsWith('proxy-') || name === 'set-cookie')
      continue;
    out[name] = value;
  }
  return out;
}
