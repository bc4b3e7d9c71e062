import type { PassthroughRoute, ProviderAdapter, WireApi } from '../providers/types';

/**
 * Where a request under a provider's prefix goes. Only the provider's metered wire APIs and its
 * explicit passthrough list are ever forwarded with the organisation's key; every other path is
 * refused (docs/api.md "Provider routes"), so no spelling of a path steps around governance.
 */
export type ProviderRoute =
  | { kind: 'metered'; api: WireApi; path: string }
  | { kind: 'passthrough'; route: PassthroughRoute; path: string }
  | { kind: 'refused'; path: string };

const SLASH = 0x2f;

/**
 * The canonical form of a path below the prefix: `;parameters` dropped from every segment,
 * empty segments (duplicate and trailing slashes) removed. Case is kept: the upstream gets the
 * canonical path, matching is case-insensitive (providers route their paths case-insensitively or
 * 404 them, and either way the bridge must not let a case variant skip metering).
 */
export function canonicalPath(path: string): string {
  // Nearly every path is canonical already: no parameters, empty or trailing segments.
  if (
    path.charCodeAt(0) === SLASH &&
    !path.includes(';') &&
    !path.includes('//') &&
    (path.length === 1 || path.charCodeAt(path.length - 1) !== SLASH)
  )
    return path;
  const segments = path
    .split('/')
    .map((s) => {
      const semi = s.indexOf(';');
      return semi === -1 ? s : s.slice(0, semi);
    })
    .filter((s) => s !== '');
  return `/${segments.join('/')}`;
}

/**
 * A parameter segment with a fixed method after it, `:model:generateContent` (Google's
 * `models/{model}:generateContent`): the part after the second colon, else undefined.
 */
function methodSuffix(seg: string): string | undefined {
  const colon = seg.indexOf(':', 1);
  return seg.startsWith(':') && colon !== -1 ? seg.slice(colon) : undefined;
}

function segmentMatches(pattern: string, seg: string): boolean {
  if (!pattern.startsWith(':')) return pattern.toLowerCase() === seg.toLowerCase();
  const suffix = methodSuffix(pattern);
  if (suffix === undefined) return seg !== '';
  return seg.length > suffix.length && seg.toLowerCase().endsWith(suffix.toLowerCase());
}

/** Matches a canonical path against a pattern whose `:name` segments take any one segment. */
function matches(pattern: string, path: string): boolean {
  const p = pattern.split('/');
  const s = path.split('/');
  if (p.length !== s.length) return false;
  return p.every((seg, i) => segmentMatches(seg, s[i]!));
}

/** Fixed segments take the pattern's spelling; parameters (an Azure deployment, a response id) keep the client's. */
function spelled(pattern: string, path: string): string {
  const p = pattern.split('/');
  return path
    .split('/')
    .map((seg, i) => {
      const pat = p[i]!;
      if (!pat.startsWith(':')) return pat;
      const suffix = methodSuffix(pat);
      return suffix === undefined ? seg : seg.slice(0, seg.length - suffix.length) + suffix;
    })
    .join('/');
}

/**
 * Routes already worked out, per provider instance, by method and path: clients send the same few
 * (`POST /v1/messages`) over and over, and matching splits every pattern and the path each time.
 * Paths are the client's to choose, so the memo is bounded in entries (full, it starts again) and
 * keeps only paths of a real API's length: 512 long ones would otherwise hold megabytes.
 */
const memos = new WeakMap<ProviderAdapter, Map<string, ProviderRoute>>();
const MEMO_LIMIT = 512;
const MEMO_PATH_LIMIT = 256;

/** The route a method and path (below the prefix, query removed) take on this provider. */
export function routeFor(adapter: ProviderAdapter, method: string, rawPath: string): ProviderRoute {
  if (rawPath.length > MEMO_PATH_LIMIT) return matchRoute(adapter, method, rawPath);
  let memo = memos.get(adapter);
  if (memo === undefined) {
    memo = new Map();
    memos.set(adapter, memo);
  }
  const key = `${method} ${rawPath}`;
  let route = memo.get(key);
  if (route === undefined) {
    route = matchRoute(adapter, method, rawPath);
    if (memo.size >= MEMO_LIMIT) memo.clear();
    memo.set(key, route);
  }
  return route;
}

function matchRoute(adapter: ProviderAdapter, method: string, rawPath: string): ProviderRoute {
  const path = canonicalPath(rawPath);
  const api = adapter.apis.find((a) => matches(a.path, path));
  if (api) {
    // A metered path is metered whatever the method: any other method is refused, never forwarded.
    return method === api.method
      ? { kind: 'metered', api, path: spelled(api.path, path) }
      : { kind: 'refused', path };
  }
  const route = adapter.passthrough.find(
    (r) => (r.methods as readonly string[]).includes(method) && matches(r.path, path),
  );
  if (route) {
    return { kind: 'passthrough', route, path: spelled(route.path, path) };
  }
  return { kind: 'refused', path };
}
