import type { Dispatcher } from 'undici';
import { anthropicErrorBody } from '../anthropic/errors';
import { messagesApi } from '../anthropic/messages';
import { anthropicModelListing } from '../anthropic/model-listing';
import { isObject } from '../common';
import { type FieldProblem, type InstanceSettings, joinUrl, type ProviderFamily } from '../family';
import {
  credentialsFileOf,
  endpointOf,
  postToVertex,
  VERTEX_ENDPOINT,
  validateVertexEntry,
  vertexLocationOf,
} from '../google-cloud';
import { mappedNames } from '../model-listing';
import type { JsonObject, ProviderAdapter, UpstreamCall } from '../types';
import { localAnswer } from '../upstream-answer';
import { instanceCredentials } from './credentials';
import { mapVertexError } from './errors';
import { modelsOf, priceModelOf, vertexModelId } from './models';
import { countTokensRequest, messagesRequest, vertexBetas } from './request';

const COUNT_TOKENS = '/v1/messages/count_tokens';

function validate(entry: JsonObject): FieldProblem | undefined {
  const problem = validateVertexEntry(entry, 'vertex-anthropic');
  if (problem) return problem;
  const m = entry.models;
  if (m !== undefined) {
    if (!isObject(m))
      return { field: 'models', message: 'expected an object of model name to Vertex model id' };
    for (const [name, id] of Object.entries(m))
      if (typeof id !== 'string' || id === '')
        return {
          field: `models.${name}`,
          message: 'expected a Vertex model id such as "claude-sonnet-4-5@20250929"',
        };
  }
  return undefined;
}

function create(s: InstanceSettings): ProviderAdapter {
  const at = vertexLocationOf(s.options);
  const endpoint = endpointOf(s.baseUrl, at.region);
  const models = modelsOf(s.options);
  const credentials = instanceCredentials(credentialsFileOf(s.options));

  /** Messages and count_tokens, rewritten for Vertex; the answer is Anthropic's JSON or SSE already. */
  async function send(call: UpstreamCall): Promise<Dispatcher.ResponseData> {
    let body: unknown;
    try {
      body = JSON.parse(call.bytes.toString('utf8'));
    } catch {
      body = undefined;
    }
    const path = call.target.split('?')[0];
    const rewrite = path === COUNT_TOKENS ? countTokensRequest : messagesRequest;
    const req = isObject(body) ? rewrite(body, models, at) : undefined;
    if (!req) return localAnswer(400, anthropicErrorBody(400, 'model: a Claude model id is required'));
    const { 'anthropic-beta': _asked, ...headers } = credentials.upstreamHeaders(call.headers);
    const betas = vertexBetas(call.headers['anthropic-beta']);
    return postToVertex(
      joinUrl(endpoint, req.path),
      call,
      { ...headers, ...(betas ? { 'anthropic-beta': betas } : {}) },
      req.body,
      mapVertexError,
    );
  }

  return {
    id: s.name,
    type: 'vertex-anthropic',
    prefix: `/${s.name}`,
    requestIdHeader: 'request-id',
    apis: [messagesApi],
    passthrough: [{ methods: ['POST'], path: COUNT_TOKENS, why: 'counts tokens; free' }],
    // Answered by the bridge, as on an `anthropic` instance (docs/routing.md#model-discovery).
    modelListing: anthropicModelListing,
    configured: true,
    upstreamUrl: (target) => joinUrl(endpoint, target),
    // A token that cannot be obtained makes the exchange answer 503 naming this instance.
    authHeaders: credentials.headers,
    errorBody: (status, _code, message) => anthropicErrorBody(status, message),
    // Recorded and priced as the Anthropic model the Vertex id names.
    modelFor: (_path, model) => (model === null ? null : priceModelOf(vertexModelId(model, models))),
    send,
  };
}

/**
 * Claude on Google Vertex AI behind Anthropic's Messages API: `/<name>/v1/messages` is sent to
 * `…/publishers/anthropic/models/{model}:rawPredict` (or `:streamRawPredict`) with an OAuth2
 * access token from google-auth-library; Vertex answers in Anthropic's JSON and SSE.
 */
export const vertexAnthropicFamily: ProviderFamily = {
  type: 'vertex-anthropic',
  defaultBaseUrl: VERTEX_ENDPOINT,
  priceId: 'anthropic',
  fields: ['project', 'region', 'credentialsFile', 'models'],
  validate,
  configured: () => true,
  create,
  // Anthropic's dated names work as they are (vertexModelId), and so do the `models` map's.
  listedModels: (s) => ({ priceData: true, names: mappedNames(modelsOf(s.options), priceModelOf) }),
};
