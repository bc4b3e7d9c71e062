import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import type { Dispatcher } from 'undici';
import type { CaptureLevel } from '../../shared/interception';
import type { ResponseOwners } from '../audit/response-owners';
import { Cancellation } from '../core/cancellation';
import type { InterceptionStart } from '../core/facts';
import { withoutPathKeys } from '../core/url-secrets';
import type { UserPlaces } from '../core/user-places';
import { BridgeError, fromFastifyError, isBridgeError } from '../errors';
import { baseUrlHint } from '../http/base-url-hint';
import type { BodyBudget } from '../http/body-budget';
import { assertJsonDepth } from '../http/json-depth';
import { type Authenticator, credentialFrom } from '../identity/auth';
import {
  conversationIdOf,
  conversationMalformed,
  errorFromBody,
  inputReferences,
  isObject,
  referencesMalformed,
} from '../providers/common';
import type { ToolHold, ToolJudge } from '../providers/tool-hold';
import type { JsonObject, PassthroughRoute, ProviderAdapter } from '../providers/types';
import { readSmall } from '../providers/upstream-answer';
import type { ModelDirectory } from '../routing/aliases-plugin';
import { ownCredential, ownCredentialSource } from '../routing/byok';
import {
  orgCredentialRefused,
  refusesOrgCredential,
  reportAnswer,
  reportBlame,
  singleCredential,
} from '../routing/credentials';
import { BLAMED_STATUSES } from '../routing/key-refusal';
import type { Router } from '../routing/routes';
import { type GovernanceGate, inFlightPlace } from './admission';
import { authenticateFirst } from './authenticate-first';
import { detectClient } from './client-detect';
import { withClientSession } from './client-session';
import { checkedRequestFacts } from './client-strings';
import {
  type AnswerRewrite,
  bufferedAnswer,
  clientCaughtUp,
  Exchange,
  type ExchangeDeps,
  endAnswerWithin,
  JSON_READ_LIMIT,
  runExchange,
  type StrategyFor,
} from './exchange';
import { clientResponseHeaders, upstreamRequestHeaders } from './headers';
import { canonicalPath, type ProviderRoute, routeFor } from './provider-paths';
import type { ProxyReply, ProxyRequest } from './proxy-request';
import { queryCredential, queryCredentialsDropped } from './query-credential';
import { idleWatchdog, sendUpstream, upstreamFailure } from './upstream';

export interface ProviderRouteDeps {
  exchange: ExchangeDeps;
  bodyLimit: number;
  /** Request-body bytes the replica holds at once (AIBRIDGE_BODY_BYTES_IN_FLIGHT), shared by every provider. */
  bodyBudget?: BodyBudget;
  /** Deepest JSON nesting accepted in a metered request body (AIBRIDGE_MAX_JSON_DEPTH). */
  maxJsonDepth: number;
  /** AIBRIDGE_MAX_JSON_CONTAINERS: most objects and arrays in a body that is parsed. */
  maxJsonContainers: number;
  auth: Authenticator;
  /** The capture level for a caller's team. */
  capture: { levelFor(team: string | null): CaptureLevel };
  /** A strategy of more rounds for a request (tool injection, server/mcp); none: one round. */
  strategyFor?: StrategyFor;
  /** Bring your own key (server/routing/byok.ts): throws `byok_not_allowed` for a team that may not. */
  byok: { check(team: string | null): void };
  /** Model aliases and the models each caller may use (server/routing); absent: no aliases, model lists refused. */
  models?: ModelDirectory;
  /** The routing table (docs/routing.md): a model it names is tried on its targets in order. */
  routes?: Router;
  /**
   * Who created each stored response: a passthrough that names one is forwarded only for them (one
   * that names a stored conversation, only for an admin).
   */
  responseOwners: Pick<ResponseOwners, 'check' | 'checkConversation' | 'checkItems'>;
  /** Counts a passthrough against the caller's rate limits (server/spend/governance.ts). */
  rateLimits: Pick<GovernanceGate, 'countUnmetered'>;
  /**
   * Each user's requests in flight on this replica (AIBRIDGE_REQUESTS_IN_FLIGHT_PER_USER), the
   * metered ones' places (withinInFlight): a passthrough holds one while it is forwarded.
   */
  inFlight?: UserPlaces;
}

const METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Path and query after the provider's prefix, exactly as the client encoded them. */
export function relativeTarget(rawUrl: string, prefix: string): { path: string; query: string } {
  let rest = rawUrl.slice(prefix.length);
  if (!rest.startsWith('/')) rest = `/${rest}`;
  const q = rest.indexOf('?');
  return q === -1 ? { path: rest, query: '' } : { path: rest.slice(0, q), query: rest.slice(q) };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the characters looked for
const MAYBE_DOT_SEGMENT = /[.%\\\x00#]/;

/**
 * `..` or `.` segments, however encoded, could walk out of the provider's prefix upstream. A
 * segment is judged as the router sees it, its `;parameters` dropped (canonicalPath): `..;` would
 * otherwise pass here, fill a `:id` and be resolved as `..` by the upstream URL.
 */
export function hasDotSegment(path: string): boolean {
  // Without a dot, an escape, a backslash, a NUL or a `#` no segment can be one (the common path,
  // checked once instead of decoding every segment).
  if (!MAYBE_DOT_SEGMENT.test(path)) return false;
  // A `#` is never part of a request target, but Node passes it on; upstream, the URL parser cuts
  // the path there, behind the route the bridge judged: `…:generateContent#:countTokens` matched
  // the free count-tokens passthrough and reached the provider as a paid, unmetered generation.
  if (path.includes('#')) return true;
  return path.split('/').some((raw) => {
    const semi = raw.indexOf(';');
    const seg = semi === -1 ? raw : raw.slice(0, semi);
    let s = seg;
    try {
      s = decodeURIComponent(seg);
    } catch {
      return true;
    }
    // An escaped `?` or `#` (`…:generateContent%3F:countTokens`): a server that decodes the path
    // before it splits off the query would take a paid call for the free one the route matched.
    return (
      s === '.' ||
      s === '..' ||
      s.includes('/') ||
      s.includes('\\') ||
      s.includes('\0') ||
      (s !== seg && (s.includes('?') || s.includes('#')))
    );
  });
}

/**
 * A target that must not go upstream: a dot segment (hasDotSegment) in the path, or a `#` in the
 * query (the upstream URL would end there). Every way in to a provider checks it.
 */
export function unsafeTarget(path: string, query: string): boolean {
  return hasDotSegment(path) || query.includes('#');
}

function parseJsonObject(raw: Buffer | undefined, maxDepth: number, maxContainers: number): JsonObject {
  if (!raw || raw.length === 0)
    throw new BridgeError('invalid_json', 'The request body is empty; a JSON object is required.');
  assertJsonDepth(raw, maxDepth, maxContainers);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new BridgeError('invalid_json', undefined, { cause: err });
  }
  if (!isObject(body)) throw new BridgeError('invalid_json', 'The request body must be a JSON object.');
  return body;
}

/**
 * An unmetered endpoint on the provider's allow-list (count tokens, model lists, stored
 * responses): forwarded with the organisation's key (or the user's own, when they brought it),
 * relayed as it comes, logged with the user.
 */
async function passThrough(
  adapter: ProviderAdapter,
  deps: ExchangeDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  target: string,
  raw: Buffer | undefined,
  own: Record<string, string> | undefined,
  held?: { hold: ToolHold; judge: ToolJudge },
): Promise<void> {
  if (!own && !(deps.serves ? deps.serves(adapter) : adapter.configured))
    throw new BridgeError('provider_not_configured');
  const lease = await (own
    ? ownCredentialSource(own)
    : (deps.credentials?.(adapter) ?? singleCredential(adapter))
  ).acquire();
  const started = performance.now();
  const abort = new Cancellation();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort();
  });
  let res: Dispatcher.ResponseData;
  const headers = { ...upstreamRequestHeaders(req.headers), ...lease.headers };
  try {
    // A family that rewrites its metered requests (another path, a signature) rewrites its POST
    // passthroughs too: Vertex's count_tokens is `count-tokens:rawPredict`.
    res = await sendUpstream(adapter, req.method as Dispatcher.HttpMethod, {
      target,
      bytes: raw ?? Buffer.alloc(0),
      headers,
      dispatcher: deps.dispatcher,
      signal: abort,
    });
  } catch (err) {
    lease.report({ status: 0 });
    throw upstreamFailure(err);
  }
  if (!own && (BLAMED_STATUSES.has(res.statusCode) || res.statusCode === 529)) {
    // Only a refusal of the key itself (revoked, out of credit) is held against it here: these
    // endpoints have limits of their own (Anthropic rate-limits count_tokens apart from Messages),
    // and a restricted key may lack one's scope, so their 429s, 529s and scope 401s cooling or
    // taking out the key would stop model requests that it serves.
    const read = await bufferedAnswer(res);
    const blame = reportBlame(lease, res.statusCode, read.json);
    if (blame === undefined) lease.report({ status: res.statusCode, requestsOwn: true });
    // The organisation's key refused: the 502 the metered routes give, not the provider's 401,
    // which reads as the member's key and is retried.
    if (refusesOrgCredential(blame, res.statusCode))
      throw orgCredentialRefused(
        adapter.id,
        errorFromBody(res.statusCode, read.json).message,
        res.statusCode,
      );
    res = read.replay();
  } else reportAnswer(lease, res, deps.now().getTime());
  if (held && res.statusCode < 400) return sendHeld(res, reply, held, req);
  reply.hijack();
  const out = reply.raw;
  out.writeHead(res.statusCode, clientResponseHeaders(res.headers, true));
  const idle = idleWatchdog(deps.idleTimeoutMs, (err) => res.body.destroy(err));
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      idle.touch();
      if (!out.write(chunk)) {
        // Waiting on the client, not the provider; one that reads nothing for the idle timeout
        // is left, as on the metered routes.
        if (!(await clientCaughtUp(out, idle, deps.idleTimeoutMs))) out.destroy();
      }
      if (out.destroyed) break;
    }
    if (!out.destroyed) endAnswerWithin(out, deps.idleTimeoutMs);
  } catch (err) {
    req.log.warn({ err }, 'upstream failed mid-response (passthrough)');
    out.destroy();
  } finally {
    idle.stop();
  }
  req.log.info(
    {
      method: req.method,
      provider: adapter.id,
      path: withoutPathKeys(target.split('?')[0]!),
      statusCode: res.statusCode,
      durationMs: Math.round((performance.now() - started) * 100) / 100,
      userId: req.principal?.user.id ?? null,
      ...(own ? { billedTo: 'user' } : {}),
    },
    'passthrough',
  );
}

/**
 * A stored model answer read back (PassthroughRoute.answerHeld) while a deny rule applies to the
 * caller: read whole (up to what a metered answer is read to) and sent with its denied calls
 * replaced, as the metered route sent it. One too large to read, or that is no JSON, cannot be
 * judged: refused rather than passed on.
 */
async function sendHeld(
  res: Dispatcher.ResponseData,
  reply: FastifyReply,
  held: { hold: ToolHold; judge: ToolJudge },
  req: FastifyRequest,
): Promise<void> {
  const bytes = await readSmall(res.body, JSON_READ_LIMIT + 1);
  let json: unknown;
  try {
    if (bytes.length > JSON_READ_LIMIT) throw new Error('too large');
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BridgeError(
      'upstream_protocol_error',
      'The stored response could not be read to apply the tool-call policy that applies to you, so it is not passed on.',
    );
  }
  const rewritten = held.hold.rewriteJson(json, held.judge);
  req.log.info({ rewritten: rewritten !== undefined }, 'passthrough: stored answer judged');
  const body = rewritten === undefined ? bytes : Buffer.from(JSON.stringify(rewritten));
  const headers = clientResponseHeaders(res.headers, false);
  reply.code(res.statusCode).headers(headers).header('content-type', 'application/json').send(body);
}

/**
 * The user's own provider credential, when the request carries one beside `X-AIBridge-Key` and the
 * caller's team may send it (docs/routing.md#bring-your-own-key); otherwise `byok_not_allowed`,
 * before anything is forwarded. An instance that signs its requests itself (Bedrock) has no header
 * a user's credential could go in, so it never takes one.
 */
function ownCredentialFor(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  req: ProxyRequest,
): Record<string, string> | undefined {
  const own = ownCredential(req.headers);
  if (!own) return undefined;
  deps.byok.check(req.principal?.user.team ?? null);
  if (adapter.send)
    throw new BridgeError(
      'byok_not_allowed',
      `Provider instance "${adapter.id}" signs its requests with the organisation's credentials; it takes no credential of the user's own.`,
    );
  return own;
}

/**
 * The instance's model list or one model of it, answered by the bridge with what the caller may
 * use (docs/routing.md#model-discovery); false when the path is not the model list.
 */
function answerModelList(
  adapter: ProviderAdapter,
  models: ModelDirectory,
  req: FastifyRequest,
  reply: FastifyReply,
  path: string,
  query: string,
): boolean {
  const listing = adapter.modelListing;
  if (!listing || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  const canonical = canonicalPath(path);
  const base = listing.path.toLowerCase();
  const lower = canonical.toLowerCase();
  let id: string | undefined;
  if (lower.startsWith(`${base}/`) && !canonical.slice(base.length + 1).includes('/'))
    id = decodeURIComponent(canonical.slice(base.length + 1));
  else if (lower !== base) return false;
  const principal = req.principal!;
  const available = models.listFor(adapter.id, principal.user.team);
  // Tells a client (the VS Code extension) this is the caller's own list, not an upstream's.
  reply.header('x-aibridge-model-list', 'caller');
  if (id === undefined) {
    const answer = listing.list(available, new URLSearchParams(query.slice(1)));
    reply.code(answer.status).type('application/json').send(answer.body);
    return true;
  }
  const one = available.find((m) => m.id === id);
  if (!one)
    throw new BridgeError('model_not_found', `No model "${id}" is available to you on ${adapter.prefix}.`);
  reply.code(200).type('application/json').send(listing.one(one));
  return true;
}

async function handle(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const { path, query } = relativeTarget(req.raw.url ?? '/', adapter.prefix);
  if (unsafeTarget(path, query))
    throw new BridgeError(
      'invalid_request',
      'The path must not contain dot segments, encoded separators or a "#".',
    );
  const route: ProviderRoute = routeFor(adapter, req.method, path);
  // Agents probe the base URL with an unauthenticated HEAD before their first call: answer it here.
  if (req.method === 'HEAD' && route.path === '/' && !credentialFrom(req.headers)) {
    reply.code(200).send();
    return;
  }
  // Checked by the onRequest hook before the body was read; the handler only reads the result.
  const principal = req.principal ?? (await deps.auth.authenticate(req.headers, req.ip));
  req.principal = principal;
  if (deps.models && answerModelList(adapter, deps.models, req, reply, path, query)) return;
  if (route.kind === 'metered') return serveMetered(adapter, deps, req, reply, route, query);
  const own = ownCredentialFor(adapter, deps, req);
  if (route.kind === 'refused') {
    if (req.method === 'HEAD' && route.path === '/') {
      reply.code(200).send();
      return;
    }
    // `/anthropic/v1/v1/messages`: a base URL with a part too many.
    const hint = baseUrlHint([adapter], req.method, `${adapter.prefix}${route.path}`);
    if (hint) {
      req.log.warn(
        { userId: principal.user.id, path: withoutPathKeys(route.path) },
        'a client was given the wrong base URL',
      );
      throw new BridgeError(
        'wrong_base_url',
        `${req.method} ${adapter.prefix}${route.path} is not served by the bridge. ${hint.message}`,
      );
    }
    throw new BridgeError(
      'not_found',
      `${req.method} ${adapter.prefix}${route.path} is not served by the bridge (docs/api.md lists what is).`,
    );
  }
  // A passthrough is a request as a metered one is, counted before anything else is judged (and
  // before an unknown stored id's wait for another replica).
  deps.rateLimits.countUnmetered(principal);
  // Held from here (a stored id's wait for another replica included) until the answer has been
  // relayed or the client has gone: passThrough returns either way.
  const place = deps.inFlight ? inFlightPlace(deps.inFlight, principal.user.id) : undefined;
  try {
    await forward(adapter, deps, req, reply, route, query, own);
  } finally {
    place?.();
  }
}

/** A passthrough, from its query's check to its answer relayed (handle holds its place meanwhile). */
async function forward(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  req: FastifyRequest,
  reply: FastifyReply,
  route: Extract<ProviderRoute, { kind: 'passthrough' }>,
  query: string,
  own: Record<string, string> | undefined,
): Promise<void> {
  const principal = req.principal!;
  const refused = adapter.queryRefusal?.(query);
  if (refused) throw new BridgeError('unsupported_parameter', refused);
  const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
  // Every passthrough body is a JSON object, checked as a metered one is (depth, size, a key named
  // twice) before any of it goes upstream, whatever the route reads of it.
  const body =
    raw && raw.length > 0 ? parseJsonObject(raw, deps.maxJsonDepth, deps.maxJsonContainers) : undefined;
  // With the user's own key a provider that keeps state per key (keyScopesStoredState) itself keeps
  // each stored response (and conversation) to that key's owner.
  if (!own || !adapter.keyScopesStoredState) {
    const stored = storedStateNamed(route.route, route.path, body);
    if (stored !== undefined) await ownStateOnly(adapter, deps, req, stored, route.path);
  }
  // A stored model answer read back is judged as the metered answer was, while a deny rule applies.
  const hold = route.route.answerHeld;
  const judge = hold ? deps.exchange.toolPolicy?.({ principal })?.judge : undefined;
  if (hold && judge && new URLSearchParams(query.slice(1)).get('stream') === 'true')
    throw new BridgeError(
      'unsupported_parameter',
      'A stored response is not streamed back while a tool-call deny rule applies to you: read it whole, without `stream=true`.',
    );
  const held = hold && judge ? { hold, judge } : undefined;
  const aliased =
    deps.models && aliasResolved(adapter, deps, principal.user.team, req.method, route.path, raw, body);
  if (aliased)
    return passThrough(adapter, deps.exchange, req, reply, aliased.path + query, aliased.bytes, own, held);
  return passThrough(adapter, deps.exchange, req, reply, route.path + query, raw, own, held);
}

/**
 * The stored state a passthrough names: a response (`resp_…`), a conversation (`conv_…`), stored
 * items (`references`), or several.
 */
interface StoredState {
  response?: string;
  conversation?: string;
  references?: string[];
}

/**
 * The stored state a passthrough names: a response in its path (`storedResponse`) or its body
 * (`continuesField`), a conversation in its body (`conversationField`); undefined when it names
 * none. A body field that cannot be read as an id (nor is null) is refused, as on the metered
 * routes: it must not go upstream unchecked.
 */
function storedStateNamed(
  route: PassthroughRoute,
  path: string,
  body: JsonObject | undefined,
): StoredState | undefined {
  if (route.storedResponse !== undefined) {
    const at = route.path.split('/').indexOf(route.storedResponse);
    // Decodable: a segment that is not was refused with the dot segments (hasDotSegment).
    return { response: decodeURIComponent(path.split('/')[at] ?? '') };
  }
  const { continuesField, conversationField, inputField } = route;
  // No body names nothing (the provider answers for itself what an empty count means).
  if ((continuesField === undefined && conversationField === undefined && inputField === undefined) || !body)
    return undefined;
  const named = continuesField === undefined ? undefined : body[continuesField];
  if (named !== undefined && named !== null && typeof named !== 'string')
    throw new BridgeError(
      'unsupported_parameter',
      `\`${continuesField}\` must be a string (the id of a response of yours) or null.`,
    );
  const stored: StoredState = {};
  if (typeof named === 'string') stored.response = named;
  if (conversationField !== undefined) {
    const malformed = conversationMalformed(conversationField, body[conversationField]);
    if (malformed !== undefined) throw new BridgeError('unsupported_parameter', malformed);
    const conversation = conversationIdOf(body[conversationField]);
    if (conversation !== undefined) stored.conversation = conversation;
  }
  if (inputField !== undefined) {
    const malformed = referencesMalformed(body[inputField]);
    if (malformed !== undefined) throw new BridgeError('unsupported_parameter', malformed);
    const references = inputReferences(body[inputField]);
    if (references !== undefined) stored.references = references;
  }
  return stored.response === undefined && stored.conversation === undefined && stored.references === undefined
    ? undefined
    : stored;
}

/**
 * A passthrough that names a stored response (`GET /responses/{id}` and kin) goes upstream only for
 * the user who created it, one that names a stored conversation only for an admin; anyone else gets
 * `404 response_not_found` (`conversation_not_found`), as OpenAI answers an id it does not know,
 * and the refusal is logged as a passthrough is (docs/security.md).
 */
async function ownStateOnly(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  req: FastifyRequest,
  stored: StoredState,
  path: string,
): Promise<void> {
  try {
    if (stored.conversation !== undefined)
      deps.responseOwners.checkConversation(stored.conversation, req.principal!);
    if (stored.references !== undefined)
      await deps.responseOwners.checkItems(stored.references, req.principal!);
    if (stored.response !== undefined) await deps.responseOwners.check(stored.response, req.principal!);
  } catch (err) {
    if (
      isBridgeError(err) &&
      (err.code === 'response_not_found' ||
        err.code === 'conversation_not_found' ||
        err.code === 'item_not_found')
    )
      req.log.info(
        {
          method: req.method,
          provider: adapter.id,
          path,
          statusCode: err.status,
          code: err.code,
          // `foreign` (another user's) or `unknown` (never seen created through the bridge).
          standing: err.cause,
          userId: req.principal?.user.id ?? null,
        },
        'passthrough refused',
      );
    throw err;
  }
}

/**
 * A passthrough that names a model alias (count tokens: Anthropic's body, OpenAI's
 * `responses/input_tokens`, Gemini's `models/{alias}:countTokens`) asks for the real model, as the
 * metered request it is counting for does: the provider knows no alias, and answered the model
 * discovery's own `fast` with `404 model not found`. Undefined: the request goes as it came.
 */
function aliasResolved(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  team: string | null,
  method: string,
  path: string,
  raw: Buffer | undefined,
  parsed: JsonObject | undefined,
): { path: string; bytes: Buffer | undefined } | undefined {
  if (method !== 'POST') return undefined;
  const naming = adapter.apis.find((a) => a.modelNaming)?.modelNaming;
  if (!naming) return undefined;
  const body = parsed ?? {};
  const asked = naming.requested(body, path);
  const real = asked === null ? undefined : deps.models!.resolve(team, asked);
  if (real === undefined) return undefined;
  const up = naming.ask(body, path, real);
  return { path: up.path, bytes: up.body === body ? raw : Buffer.from(JSON.stringify(up.body)) };
}

/**
 * A call to one of the provider's metered APIs, its caller authenticated and its body read: the
 * request is described, priced and recorded as it is relayed. Fastify's handler and the provider
 * lane (server/proxy/provider-lane.ts) both end here.
 */
export function serveMetered(
  adapter: ProviderAdapter,
  deps: ProviderRouteDeps,
  req: ProxyRequest,
  reply: ProxyReply,
  route: Extract<ProviderRoute, { kind: 'metered' }>,
  query: string,
): Promise<void> {
  const principal = req.principal!;
  const own = ownCredentialFor(adapter, deps, req);
  const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
  const { api } = route;
  let parsed = parseJsonObject(raw, deps.maxJsonDepth, deps.maxJsonContainers);
  const unsupported = api.unsupported?.(parsed, query) ?? adapter.queryRefusal?.(query);
  if (unsupported) throw new BridgeError('unsupported_parameter', unsupported);
  let bytes = raw!;
  let target = route.path;
  // A model alias: the real model goes upstream and is what is priced, governed and recorded.
  const naming = api.modelNaming;
  const asked = naming?.requested(parsed, route.path) ?? null;
  const real = asked === null ? undefined : deps.models?.resolve(principal.user.team, asked);
  let answerRewrite: AnswerRewrite | undefined;
  if (naming && asked !== null && real !== undefined) {
    const up = naming.ask(parsed, route.path, real);
    parsed = up.body;
    target = up.path;
    bytes = Buffer.from(JSON.stringify(parsed));
    answerRewrite = {
      json: (answer) => naming.answer(answer, asked),
      event: (ev, data) => naming.event(ev, data, asked),
    };
  }
  const client = detectClient(req.headers);
  const described = withClientSession(api.describeRequest(parsed, req.headers), client, req.headers, parsed);
  const priceAs = adapter.priceAs?.(target, described.model);
  // Copied only where the instance says more than the body (most requests: neither).
  const facts =
    adapter.modelFor || priceAs
      ? {
          ...described,
          ...(adapter.modelFor ? { model: adapter.modelFor(target, described.model) } : {}),
          ...(priceAs ? { priceAs } : {}),
        }
      : described;
  const start: InterceptionStart = {
    id: `int_${randomUUID()}`,
    principal,
    provider: adapter.id,
    api: api.name,
    client,
    // Client-chosen strings bounded and redacted before any map, metric or record sees them.
    request: checkedRequestFacts(facts, deps.exchange.recorder.redactor),
    startedAt: deps.exchange.now(),
    requestId: req.id,
    capture: deps.capture.levelFor(principal.user.team),
    ...(own ? { billedTo: 'user' as const } : {}),
    ...(answerRewrite ? { alias: asked! } : {}),
  };
  const prepared = api.prepare(parsed, bytes, query);
  if (start.capture === 'full') prepared.captureOutput = true;
  req.interceptionId = start.id;
  // The model as the client named it, an alias resolved (a Gemini path names it, the body does not).
  // A user's own credential is for the instance it was sent to: never routed elsewhere.
  const targets = own ? undefined : deps.routes?.plan(api, target, query, described.model ?? facts.model);
  const x = new Exchange(adapter, deps.exchange, req, reply, {
    api,
    start,
    prepared,
    body: parsed,
    target: target + query,
    ...(own ? { credentials: ownCredentialSource(own) } : {}),
    ...(answerRewrite ? { answerRewrite } : {}),
    ...(targets && targets.length > 0 ? { targets } : {}),
  });
  // The exchange's promise as it is, without an async wrapper of its own: both callers await this
  // call inside their try, so a refusal thrown above reaches them as a rejection would.
  return runExchange(x, deps.strategyFor);
}

/** Mounts one provider under its prefix: its metered APIs and allow-list, errors in its shape. */
export function providerRoutes(adapter: ProviderAdapter, deps: ProviderRouteDeps): FastifyPluginAsync {
  return async (app) => {
    app.removeAllContentTypeParsers();
    const asBuffer = { parseAs: 'buffer' as const, bodyLimit: deps.bodyLimit };
    const passBody = (_req: FastifyRequest, body: Buffer, done: (err: null, body: Buffer) => void): void => {
      done(null, body);
    };
    // Every body reaches the handler as it came. JSON is also named: fastify caches the parser of a
    // named type, and looks a catch-all up afresh (parsing the content-type header) on every request.
    app.addContentTypeParser('application/json', asBuffer, passBody);
    app.addContentTypeParser('*', asBuffer, passBody);
    app.setErrorHandler((err, req, reply) => {
      const e = fromFastifyError(err);
      if (e.code === 'internal_error') req.log.error({ err }, 'proxy failed');
      reply
        .code(e.status)
        .headers(e.headers)
        .type('application/json')
        .send(adapter.errorBody(e.status, e.code, e.message, e.headers));
    });
    if (adapter.credentialQuery)
      app.addHook(
        'onRequest',
        queryCredential(adapter.credentialQuery.param, adapter.credentialQuery.header),
      );
    // Google's routes refuse the other credential-named parameters by name (a clear 400); other
    // families' are cut before anything sees them.
    else app.addHook('onRequest', queryCredentialsDropped());
    app.addHook('onRequest', authenticateFirst(deps.auth, adapter.prefix));
    const handler = (req: FastifyRequest, reply: FastifyReply): Promise<void> =>
      handle(adapter, deps, req, reply);
    // Any valid key, checked by the hook above so refusals come in the provider's shape.
    const config = { access: 'member' as const };
    app.route({ method: METHODS, url: '/', handler, exposeHeadRoute: false, config });
    app.route({ method: METHODS, url: '/*', handler, exposeHeadRoute: false, config });
  };
}
