import { type FieldProblem, hasKey, type InstanceSettings, joinUrl, type ProviderFamily } from '../family';
import { chatCompletions, chatCompletionsAt } from '../openai/chat-completions';
import { openaiErrorBody } from '../openai/errors';
import { responsesAt } from '../openai/responses';
import type { JsonObject, ProviderAdapter } from '../types';
import { entraTokens } from './entra';
import { contentFilterBody } from './errors';

const DEPLOYMENT = /^\/openai\/deployments\/([^/]+)\//i;

/** The resource root (`https://res.openai.azure.com`) of a v1 base (`…/openai/v1`) or of the root itself. */
export function resourceRoot(baseUrl: string): string {
  return baseUrl.replace(/\/+$/, '').replace(/\/openai(\/v1)?$/i, '');
}

/** The first dated `api-version` of the deployments form that takes `stream_options` (2024-09-01-preview). */
const STREAM_OPTIONS_SINCE = '2024-09-01';

/**
 * Whether the deployments form's `api-version` takes `stream_options`: earlier versions
 * (2024-02-01, 2024-06-01, still in many clients' settings) answer it with 400
 * `Unrecognized request argument`, so their streams go as sent and are recorded with usage floored.
 * A version that is no date (or none) is asked as any other request is.
 */
export function streamOptionsTaken(query: string): boolean {
  const version = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query).get('api-version');
  const date = version ? /^(\d{4}-\d{2}-\d{2})/.exec(version)?.[1] : undefined;
  return date === undefined || date >= STREAM_OPTIONS_SINCE;
}

function deploymentsOf(options: JsonObject): Readonly<Record<string, string>> {
  const d = options.deployments;
  return d && typeof d === 'object' && !Array.isArray(d) ? (d as Record<string, string>) : {};
}

function validate(entry: JsonObject): FieldProblem | undefined {
  const d = entry.deployments;
  if (d !== undefined) {
    if (!d || typeof d !== 'object' || Array.isArray(d))
      return { field: 'deployments', message: 'expected an object of deployment name to model name' };
    for (const [dep, model] of Object.entries(d))
      if (typeof model !== 'string' || model === '')
        return { field: `deployments.${dep}`, message: 'expected a model name' };
  }
  if (entry.auth !== undefined && entry.auth !== 'api-key' && entry.auth !== 'entra')
    return { field: 'auth', message: 'expected "api-key" or "entra"' };
  if (entry.auth === 'entra' && entry.apiKey !== undefined)
    return { field: 'apiKey', message: 'an "entra" instance takes no apiKey' };
  if (entry.auth === 'entra' && entry.keys !== undefined)
    return { field: 'keys', message: 'an "entra" instance takes no keys' };
  return undefined;
}

function create(s: InstanceSettings): ProviderAdapter {
  const root = resourceRoot(s.baseUrl);
  const deployments = deploymentsOf(s.options);
  const byLowerCase = new Map(Object.entries(deployments).map(([dep, model]) => [dep.toLowerCase(), model]));
  const entra = s.options.auth === 'entra' ? entraTokens() : undefined;
  return {
    id: s.name,
    type: 'azure-openai',
    keyScopesStoredState: true,
    // `/<name>/v1/…` (OpenAI SDKs with a base URL) and `/<name>/openai/…` (AzureOpenAI with an endpoint).
    prefix: `/${s.name}`,
    requestIdHeader: 'apim-request-id',
    apis: [
      chatCompletionsAt('/v1/chat/completions'),
      responsesAt('/v1/responses'),
      chatCompletionsAt('/openai/v1/chat/completions'),
      responsesAt('/openai/v1/responses'),
      chatCompletions({
        path: '/openai/deployments/:deployment/chat/completions',
        forceUsage: streamOptionsTaken,
      }),
      // The dated form of Responses (`?api-version=2025-04-01-preview`): the AzureOpenAI SDK puts
      // no deployment in its path, so `client.responses.create` (and Codex on an `/openai` base URL)
      // posts here, the deployment named as the `model`.
      responsesAt('/openai/responses'),
    ],
    passthrough: [
      { methods: ['GET', 'HEAD'], path: '/v1/models', why: 'model list; free' },
      { methods: ['GET', 'HEAD'], path: '/openai/v1/models', why: 'model list; free' },
    ],
    configured: entra !== undefined || hasKey(s),
    upstreamUrl: (target) => joinUrl(root, /^\/v1(\/|$)/i.test(target) ? `/openai${target}` : target),
    authHeaders(key?: string): Record<string, string> | Promise<Record<string, string>> {
      if (entra) return entra().then((token) => ({ authorization: `Bearer ${token}` }));
      const k = key ?? s.apiKey;
      return k ? { 'api-key': k } : {};
    },
    errorBody: openaiErrorBody,
    // A deployment is named by the path (deployments form) or as the `model` (v1 API): price its model.
    // Azure reads deployment names whatever their case (they are resource names), so the map is
    // too: `PROD-4O` matched nothing before, and was judged by the model policy under its own
    // name, stepping around a rule on the model it serves.
    modelFor(path, model) {
      const dep = DEPLOYMENT.exec(path)?.[1] ?? model;
      if (dep === null) return null;
      if (Object.hasOwn(deployments, dep)) return deployments[dep]!;
      return byLowerCase.get(dep.toLowerCase()) ?? dep;
    },
    clientErrorBody: contentFilterBody,
  };
}

/**
 * Azure OpenAI: the v1 API (`https://{resource}.openai.azure.com/openai/v1/`) and the deployments
 * form (`/openai/deployments/{dep}/chat/completions?api-version=`), with the `api-key` header or
 * Entra ID tokens (`"auth": "entra"`). `deployments` maps deployment names to models for prices.
 */
export const azureOpenaiFamily: ProviderFamily = {
  type: 'azure-openai',
  defaultBaseUrl: undefined,
  priceId: 'azure',
  fields: ['deployments', 'auth'],
  validate,
  configured: (s) => s.options.auth === 'entra' || hasKey(s),
  create,
};
