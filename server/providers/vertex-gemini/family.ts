import type { Dispatcher } from 'undici';
import { isObject } from '../common';
import { type InstanceSettings, joinUrl, type ProviderFamily } from '../family';
import { geminiErrorBody } from '../gemini/errors';
import { modelOfPath } from '../gemini/family';
import { generateContentAt } from '../gemini/generate-content';
import { googleQueryRefusal } from '../gemini/query';
import {
  credentialsFileOf,
  endpointOf,
  postToVertex,
  VERTEX_ENDPOINT,
  validateVertexEntry,
  vertexLocationOf,
} from '../google-cloud';
import type { JsonObject, PassthroughRoute, ProviderAdapter, UpstreamCall, WireApi } from '../types';
import { localAnswer } from '../upstream-answer';
import { instanceCredentials } from '../vertex-anthropic/credentials';
import { mapVertexGeminiError } from './errors';
import { geminiModelOf } from './models';
import { vertexBody, vertexTarget } from './request';

/**
 * Where clients name a model: the Gemini API's form (`/v1beta/models/{m}`, also `/v1`), Vertex's
 * (`/v1beta1/projects/{p}/locations/{l}/publishers/google/models/{m}`, also `/v1`) and Vertex
 * express mode's (`/v1beta1/publishers/google/models/{m}`), each followed by `:{method}`.
 */
const MODEL_PREFIXES: readonly string[] = [
  ...['/v1beta', '/v1'].map((v) => `${v}/models`),
  ...['/v1beta1', '/v1'].flatMap((v) => [
    `${v}/projects/:project/locations/:location/publishers/google/models`,
    `${v}/publishers/google/models`,
  ]),
];

const APIS: readonly WireApi[] = MODEL_PREFIXES.flatMap((p) => [
  generateContentAt(`${p}/:model:generateContent`),
  generateContentAt(`${p}/:model:streamGenerateContent`),
]);

const PASSTHROUGH: readonly PassthroughRoute[] = MODEL_PREFIXES.map((p) => ({
  methods: ['POST'],
  path: `${p}/:model:countTokens`,
  why: 'counts tokens; free',
}));

function create(s: InstanceSettings): ProviderAdapter {
  const at = vertexLocationOf(s.options);
  const endpoint = endpointOf(s.baseUrl, at.region);
  const credentials = instanceCredentials(credentialsFileOf(s.options));

  /** generateContent, streamGenerateContent and countTokens, sent to the instance's project and region. */
  async function send(call: UpstreamCall): Promise<Dispatcher.ResponseData> {
    const to = vertexTarget(call.target, at);
    if (!to) return localAnswer(404, geminiErrorBody(404, 'not_found', 'Not a Gemini method.'));
    let body: unknown;
    try {
      body = JSON.parse(call.bytes.toString('utf8'));
    } catch {
      body = undefined;
    }
    const rewritten = isObject(body) ? vertexBody(body, to.method) : undefined;
    return postToVertex(
      joinUrl(endpoint, to.path),
      call,
      credentials.upstreamHeaders(call.headers),
      rewritten ? JSON.stringify(rewritten) : call.bytes,
      mapVertexGeminiError,
    );
  }

  return {
    id: s.name,
    type: 'vertex-gemini',
    prefix: `/${s.name}`,
    requestIdHeader: 'x-request-id',
    apis: APIS,
    passthrough: PASSTHROUGH,
    configured: true,
    upstreamUrl: (target) => joinUrl(endpoint, vertexTarget(target, at)?.path ?? target),
    // A token that cannot be obtained makes the exchange answer 503 naming this instance.
    authHeaders: credentials.headers,
    errorBody: geminiErrorBody,
    // Recorded and priced as the Gemini model the Vertex id names (`gemini-2.0-flash-001` → `gemini-2.0-flash`).
    modelFor: (path, model) => {
      const m = modelOfPath(path) ?? model;
      return m === null ? null : geminiModelOf(m);
    },
    credentialQuery: { param: 'key', header: 'x-goog-api-key' },
    queryRefusal: googleQueryRefusal,
    send,
  };
}

/**
 * Gemini on Google Vertex AI, served in the Gemini API's form and in Vertex's own: every request
 * goes to `…/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}` of
 * the instance with an OAuth2 access token from google-auth-library; Vertex answers in Gemini's
 * JSON and SSE, metered by the gemini family's wire API.
 */
export const vertexGeminiFamily: ProviderFamily = {
  type: 'vertex-gemini',
  defaultBaseUrl: VERTEX_ENDPOINT,
  priceId: 'google',
  keyPools: false,
  fields: ['project', 'region', 'credentialsFile'],
  validate: (entry: JsonObject) => validateVertexEntry(entry, 'vertex-gemini'),
  configured: () => true,
  create,
};
