import type { ApiName } from '../../shared/interception';
import type { PriceAs } from '../core/facts';
import type { ProviderAdapter, WireApi } from '../providers/types';

/**
 * One target of a route: an instance and the model id it is asked for there; `model` null means
 * the model the client asked for, unchanged (`"anthropic"` alone in the file).
 */
export interface RouteTarget {
  readonly instance: string;
  readonly model: string | null;
}

/** The routing table: a model the client asks for → the targets to try, in order. */
export type RouteTable = Readonly<Record<string, readonly RouteTarget[]>>;

/** A problem in the routing table, naming the entry (`routes.<model>[<i>]`). */
export class RouteTableError extends Error {
  constructor(
    readonly entry: string,
    message: string,
  ) {
    super(`routes.${entry}: ${message}`);
    this.name = 'RouteTableError';
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * `"bedrock:us.anthropic.claude-sonnet-4-6-v1:0"` → instance and model, split on the FIRST colon
 * only (model ids contain colons); `"anthropic"` → the asked model on that instance.
 */
export function parseTarget(spec: string): RouteTarget {
  const i = spec.indexOf(':');
  return i === -1
    ? { instance: spec, model: null }
    : { instance: spec.slice(0, i), model: spec.slice(i + 1) };
}

/** A target as the file writes it. */
export function formatTarget(t: RouteTarget): string {
  return t.model === null ? t.instance : `${t.instance}:${t.model}`;
}

/** The table as the file and the admin API write it: model → ["instance", "instance:model", …]. */
export function formatRoutes(table: RouteTable): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [model, targets] of Object.entries(table)) out[model] = targets.map(formatTarget);
  return out;
}

/**
 * Reads a routing table (the providers file's top-level `routes`, or a PUT body), checking what
 * needs no adapter: its shape, that every target names a configured instance, that no model is
 * left without a target and that no target appears twice. Routes are one level: a target's model
 * is sent as it is and never looked up in the table again, so a route cannot loop; a target that
 * repeats the route's own model on the same instance (`"anthropic"` and
 * `"anthropic:<the route's model>"`) is a duplicate.
 */
export function parseRoutes(raw: unknown, instances: ReadonlySet<string>): RouteTable {
  if (raw === undefined) return {};
  if (!isPlainObject(raw))
    throw new RouteTableError('', 'expected {"<model>": ["<instance>", "<instance>:<model>", …], …}');
  const out: Record<string, RouteTarget[]> = {};
  for (const [model, list] of Object.entries(raw)) {
    if (model === '') throw new RouteTableError('""', 'the model name must not be empty');
    if (!Array.isArray(list))
      throw new RouteTableError(model, 'expected a list of targets ("<instance>" or "<instance>:<model>")');
    if (list.length === 0) throw new RouteTableError(model, 'the model has no target');
    const seen = new Set<string>();
    const targets: RouteTarget[] = [];
    list.forEach((spec, i) => {
      const entry = `${model}[${i}]`;
      if (typeof spec !== 'string' || spec === '')
        throw new RouteTableError(entry, 'expected "<instance>" or "<instance>:<model>"');
      const t = parseTarget(spec);
      if (!instances.has(t.instance))
        throw new RouteTableError(
          entry,
          `unknown instance "${t.instance}"; one of ${[...instances].join(', ') || '(none)'}`,
        );
      if (t.model === '') throw new RouteTableError(entry, 'the model after the colon is empty');
      const key = `${t.instance}\0${t.model ?? model}`;
      if (seen.has(key))
        throw new RouteTableError(entry, `duplicate target (${t.instance} with model ${t.model ?? model})`);
      seen.add(key);
      targets.push(t);
    });
    out[model] = targets;
  }
  return out;
}

/**
 * Checks the table against the instances' adapters: every target must serve each wire API its
 * route's first target serves, so a client is never failed over to an API it does not speak (an
 * Anthropic Messages client to an OpenAI instance).
 */
export function checkRouteApis(table: RouteTable, adapters: readonly ProviderAdapter[]): void {
  const byId = new Map(adapters.map((a) => [a.id, a]));
  for (const [model, targets] of Object.entries(table)) {
    const apisOf = (i: number): Set<ApiName> => {
      const a = byId.get(targets[i]!.instance);
      if (!a) throw new RouteTableError(`${model}[${i}]`, `unknown instance "${targets[i]!.instance}"`);
      return new Set(a.apis.map((x) => x.name));
    };
    const first = apisOf(0);
    for (let i = 1; i < targets.length; i++) {
      const have = apisOf(i);
      const missing = [...first].filter((n) => !have.has(n));
      if (missing.length > 0)
        throw new RouteTableError(
          `${model}[${i}]`,
          `instance "${targets[i]!.instance}" does not serve ${missing.join(', ')}, which the route's first target "${targets[0]!.instance}" serves`,
        );
    }
  }
}

/** One place a routed request may go: an instance, the wire API there, the path and the model. */
export interface AttemptTarget {
  readonly adapter: ProviderAdapter;
  readonly api: WireApi;
  /** The canonical path below the instance's prefix, with the client's query. */
  readonly target: string;
  /** The model id to put in the body; null: the body goes as the client sent it. */
  readonly model: string | null;
  /** The model the attempt is recorded, priced and breaker-keyed as (the instance's `modelFor`). */
  readonly recordModel: string | null;
  /** Where the attempt is priced from when not `recordModel`'s entry (the instance's `priceAs`). */
  readonly priceAs?: PriceAs;
}

/**
 * Where `adapter` serves the client's API: the same path pattern when it has it (the client's path
 * then goes as it is), else its first API of the same name at a fixed path.
 */
function apiFor(
  adapter: ProviderAdapter,
  client: WireApi,
  path: string,
): { wire: WireApi; path: string } | undefined {
  const same = adapter.apis.find((a) => a.name === client.name && a.path === client.path);
  if (same) return { wire: same, path };
  const fixed = adapter.apis.find((a) => a.name === client.name && !a.path.includes(':'));
  return fixed && { wire: fixed, path: fixed.path };
}

/** The segment of an API path pattern that names the model (`:model:generateContent`), by index. */
function modelSegment(pattern: string): number {
  return pattern.split('/').findIndex((seg) => seg.startsWith(':model'));
}

/** `path` with its model segment naming `model` instead (an API that takes the model in the path). */
function withPathModel(pattern: string, path: string, model: string): string {
  const i = modelSegment(pattern);
  const segs = path.split('/');
  const pat = pattern.split('/')[i]!;
  segs[i] = encodeURIComponent(model) + pat.slice(':model'.length);
  return segs.join('/');
}

/** The routing table against the running instances: what a request's attempts are. */
export class Router {
  private readonly byId: Map<string, ProviderAdapter>;

  constructor(
    private table: RouteTable,
    adapters: readonly ProviderAdapter[],
  ) {
    checkRouteApis(table, adapters);
    this.byId = new Map(adapters.map((a) => [a.id, a]));
  }

  get routes(): RouteTable {
    return this.table;
  }

  /** Checks a table against the instances without using it (RouteTableError naming the entry). */
  check(table: RouteTable): void {
    checkRouteApis(table, [...this.byId.values()]);
  }

  /** Replaces the table (admin PUT, another replica's change); checked first, unchanged on error. */
  replace(table: RouteTable): void {
    this.check(table);
    this.table = table;
  }

  /**
   * The targets of a request for `model` on `api` at `path` (+ `query`), in order; undefined when no
   * route applies (the model has none, or its first target does not serve the request's API).
   * Targets that cannot take the request's path are left out.
   */
  plan(api: WireApi, path: string, query: string, model: string | null): AttemptTarget[] | undefined {
    if (model === null || !Object.hasOwn(this.table, model)) return undefined;
    const targets = this.table[model]!;
    const out: AttemptTarget[] = [];
    for (const t of targets) {
      const adapter = this.byId.get(t.instance);
      const at = adapter && apiFor(adapter, api, path);
      if (!adapter || !at) {
        // The route is for another API than this request's: not this request's route.
        if (t === targets[0]) return undefined;
        continue;
      }
      const asked = t.model ?? model;
      const inPath = modelSegment(at.wire.path) !== -1;
      const targetPath = inPath && asked !== model ? withPathModel(at.wire.path, at.path, asked) : at.path;
      out.push({
        adapter,
        api: at.wire,
        target: targetPath + query,
        // An API that names the model in its path keeps its body as it is.
        model: asked === model || inPath ? null : asked,
        recordModel: adapter.modelFor ? adapter.modelFor(targetPath, asked) : asked,
        ...(adapter.priceAs ? { priceAs: adapter.priceAs(targetPath, asked) } : {}),
      });
    }
    return out;
  }
}
