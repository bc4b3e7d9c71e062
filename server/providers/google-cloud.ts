import type { Dispatcher } from 'undici';
import { isObject } from './common';
import type { FieldProblem } from './family';
import type { UpstreamCall } from './types';
import { jsonAnswer, readSmall, withBody } from './upstream-answer';
import { requestUrl } from './upstream-request';
import type { JsonObject } from './wire';

/**
 * What every Vertex AI family shares (vertex-anthropic, vertex-gemini): where an instance's
 * requests go (project, region, endpoint), how its providers-file entry names them, Google's
 * retry hint, and how a request is sent and its error answer mapped. The OAuth2 credentials are vertex-anthropic/credentials.ts.
 */

/** The regional endpoint; `{region}` is filled in from the instance's region. */
export const VERTEX_ENDPOINT = 'https://{region}-aiplatform.googleapis.com';
/** The `global` location has no regional host. */
const GLOBAL_ENDPOINT = 'https://aiplatform.googleapis.com';
/** `us-east5`, `europe-west1`, `northamerica-northeast1`, or `global`. */
const REGION = /^([a-z]+(-[a-z]+)+\d+|global)$/;
/** A project id (`my-project-123`) or a domain-scoped one (`example.com:my-project`). */
const PROJECT = /^([a-z][a-z0-9.-]*:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

/** Where an instance's requests go: its project and region. */
export interface VertexLocation {
  readonly project: string;
  readonly region: string;
}

/** The instance's project and region, as `validateVertexEntry` let them through. */
export function vertexLocationOf(options: JsonObject): VertexLocation {
  return { project: String(options.project), region: String(options.region) };
}

/** The instance's `credentialsFile`; undefined: application default credentials. */
export function credentialsFileOf(options: JsonObject): string | undefined {
  return typeof options.credentialsFile === 'string' ? options.credentialsFile : undefined;
}

/** Checks `project`, `region`, `credentialsFile` and that no `apiKey` is given; `type` names the family in the message. */
export function validateVertexEntry(entry: JsonObject, type: string): FieldProblem | undefined {
  if (typeof entry.project !== 'string' || !PROJECT.test(entry.project))
    return { field: 'project', message: 'expected a Google Cloud project id such as "my-project"' };
  if (typeof entry.region !== 'string' || !REGION.test(entry.region))
    return { field: 'region', message: 'expected a Vertex AI region such as "us-east5", or "global"' };
  if (entry.apiKey !== undefined)
    return {
      field: 'apiKey',
      message: `a ${type} instance uses Google OAuth2 credentials (credentialsFile or ADC)`,
    };
  if (
    entry.credentialsFile !== undefined &&
    (typeof entry.credentialsFile !== 'string' || entry.credentialsFile === '')
  )
    return { field: 'credentialsFile', message: 'expected the path of a Google credentials JSON file' };
  return undefined;
}

/** The instance's endpoint: its `baseUrl`, or the region's host (the `global` location has its own). */
export function endpointOf(baseUrl: string, region: string): string {
  if (baseUrl === VERTEX_ENDPOINT && region === 'global') return GLOBAL_ENDPOINT;
  return baseUrl.replace('{region}', region);
}

/** `RetryInfo.retryDelay` ("30s", "1.5s") in a Google error's `details`, in whole seconds rounded up. */
export function retryDelayOf(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const d of details) {
    if (!isObject(d) || typeof d.retryDelay !== 'string') continue;
    const m = /^(\d+(?:\.\d+)?)s$/.exec(d.retryDelay);
    if (m) return String(Math.max(1, Math.ceil(Number(m[1]))));
  }
  return undefined;
}

/** A Vertex error answer as a family's client gets it. */
export interface VertexError {
  readonly status: number;
  /** Seconds a throttled client waits, when there is a hint. */
  readonly retryAfter?: string;
  /** The error body in the client's shape; undefined: the upstream's bytes are it already, relayed as sent. */
  readonly body?: unknown;
}

/**
 * Sends a rewritten request to Vertex AI. A success or a stream comes back as it is; an error
 * answer is read whole and given to the family's `mapError`, so the client gets it in its API's
 * shape with the retry hint.
 */
export async function postToVertex(
  url: string,
  call: UpstreamCall,
  headers: Record<string, string | string[]>,
  body: string | Buffer,
  mapError: (status: number, raw: Buffer, retryAfter?: string) => VertexError,
): Promise<Dispatcher.ResponseData> {
  const res = await requestUrl(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body,
    dispatcher: call.dispatcher,
    signal: call.signal,
  });
  if (res.statusCode < 400 || String(res.headers['content-type'] ?? '').includes('text/event-stream'))
    return res;
  const raw = await readSmall(res.body);
  const retry = res.headers['retry-after'];
  const mapped = mapError(res.statusCode, raw, typeof retry === 'string' ? retry : undefined);
  const extra: Record<string, string> = mapped.retryAfter ? { 'retry-after': mapped.retryAfter } : {};
  if (mapped.body === undefined) return withBody(res, mapped.status, { ...res.headers, ...extra }, [raw]);
  return jsonAnswer(res, mapped.status, mapped.body, extra);
}
