import { type Dispatcher, getGlobalDispatcher } from 'undici';

export type UpstreamRequest = Pick<Dispatcher.RequestOptions, 'method' | 'headers' | 'body' | 'signal'> & {
  dispatcher?: Dispatcher | undefined;
};

export interface Place {
  origin: string;
  path: string;
}

/**
 * Origins and paths of the URLs requests went to. A few per provider instance and model, but a
 * model name can be in a path (Gemini, Bedrock) and a client's query goes upstream with it, so
 * the memo is bounded in count (it starts over when full) and keeps only URLs of a usual length:
 * a member's long queries cannot pin memory in it.
 */
const places = new Map<string, Place>();
const PLACES_LIMIT = 1024;
const PLACE_URL_LIMIT = 512;

export function placeOf(url: string): Place {
  let at = places.get(url);
  if (at === undefined) {
    const u = new URL(url);
    // The path the bridge routed must be the path sent: a fragment would cut it short (the routes
    // refuse a `#`; this is the last line should one get here some other way).
    if (u.hash !== '' || url.includes('#')) throw new Error('an upstream URL must not contain "#"');
    at = { origin: u.origin, path: u.search ? `${u.pathname}${u.search}` : u.pathname };
    if (url.length <= PLACE_URL_LIMIT) {
      if (places.size >= PLACES_LIMIT) places.clear();
      places.set(url, at);
    }
  }
  return at;
}

/**
 * What undici's `request(url, options)` does, without what it costs on every call: it parses the
 * URL again each time, and spreads the options into an object that then gains `origin`, `path`
 * and `method`, which on Node 20 builds new hidden classes for every request (docs/performance.md,
 * "Spread clones"). The same origin, path and options reach the same dispatcher.
 */
export function requestUrl(url: string, req: UpstreamRequest): Promise<Dispatcher.ResponseData> {
  const { origin, path } = placeOf(url);
  return (req.dispatcher ?? getGlobalDispatcher()).request({
    origin,
    path,
    method: req.method,
    headers: req.headers,
    body: req.body,
    signal: req.signal,
  });
}
