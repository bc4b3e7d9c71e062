import { isObject } from './common';
import type { FieldProblem } from './family';
import type { JsonObject } from './wire';

/**
 * What every Vertex AI family shares (vertex-anthropic, vertex-gemini): where an instance's
 * requests go (project, region, endpoint), how its providers-file entry names them, and Google's
 * retry hint. The OAuth2 credentials are vertex-anthropic/credentials.ts.
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
