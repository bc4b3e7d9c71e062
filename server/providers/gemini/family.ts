import { hasKey, joinUrl, KEY_REQUIRED, NO_FIELDS, type ProviderFamily } from '../family';
import type { PassthroughRoute, ProviderAdapter, WireApi } from '../types';
import { geminiErrorBody } from './errors';
import { generateContentAt } from './generate-content';
import { googleQueryRefusal } from './query';

/** Both API versions clients use; the path below the version is the same. */
const VERSIONS = ['/v1beta', '/v1'] as const;

const APIS: readonly WireApi[] = VERSIONS.flatMap((v) => [
  generateContentAt(`${v}/models/:model:generateContent`),
  generateContentAt(`${v}/models/:model:streamGenerateContent`),
]);

const PASSTHROUGH: readonly PassthroughRoute[] = VERSIONS.flatMap((v): PassthroughRoute[] => [
  { methods: ['POST'], path: `${v}/models/:model:countTokens`, why: 'counts tokens; free' },
  { methods: ['GET', 'HEAD'], path: `${v}/models`, why: 'model list; free' },
  { methods: ['GET', 'HEAD'], path: `${v}/models/:id`, why: 'one model; free' },
]);

/** `/v1beta/models/gemini-2.5-pro:generateContent` → `gemini-2.5-pro`. */
export function modelOfPath(path: string): string | null {
  // Google's custom-method grammar: the method follows the last colon, the model is all before it
  // (`models/a:b:generateContent` is model `a:b`, not `a`).
  const m = /\/models\/([^/]+):[^/:]+$/.exec(path);
  return m ? m[1]! : null;
}

/**
 * Google's Gemini API (generativelanguage.googleapis.com), native: `generateContent` and
 * `streamGenerateContent` metered, `countTokens` and the model list passed through. Clients send
 * the bridge key as `x-goog-api-key`, `?key=` or a bearer; the instance's key goes upstream as
 * `x-goog-api-key`. The built-in instance `gemini` exists only when AIBRIDGE_GEMINI_API_KEY is set.
 */
export const geminiFamily: ProviderFamily = {
  type: 'gemini',
  defaultBaseUrl: 'https://generativelanguage.googleapis.com',
  env: { baseUrl: 'AIBRIDGE_GEMINI_BASE_URL', apiKey: 'AIBRIDGE_GEMINI_API_KEY', onlyWithKey: true },
  priceId: 'google',
  fields: [],
  validate: NO_FIELDS,
  configured: KEY_REQUIRED,
  create: (s): ProviderAdapter => ({
    id: s.name,
    type: 'gemini',
    prefix: `/${s.name}`,
    requestIdHeader: 'x-request-id',
    apis: APIS,
    passthrough: PASSTHROUGH,
    configured: hasKey(s),
    upstreamUrl: (target) => joinUrl(s.baseUrl, target),
    authHeaders: (key?: string): Record<string, string> => {
      const k = key ?? s.apiKey;
      return k ? { 'x-goog-api-key': k } : {};
    },
    errorBody: geminiErrorBody,
    modelFor: (path, model) => modelOfPath(path) ?? model,
    credentialQuery: { param: 'key', header: 'x-goog-api-key' },
    queryRefusal: googleQueryRefusal,
  }),
};
