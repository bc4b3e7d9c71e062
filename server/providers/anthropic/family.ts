import { hasKey, joinUrl, KEY_REQUIRED, NO_FIELDS, type ProviderFamily } from '../family';
import { anthropicErrorBody } from './errors';
import { messagesApi } from './messages';
import { anthropicModelListing } from './model-listing';

/**
 * Anthropic's Messages API. The built-in instance `anthropic` (AIBRIDGE_ANTHROPIC_*) is mounted at
 * `/anthropic`; any other instance at `/<name>`, so `ANTHROPIC_BASE_URL=<bridge>/<name>` works.
 */
export const anthropicFamily: ProviderFamily = {
  type: 'anthropic',
  defaultBaseUrl: 'https://api.anthropic.com',
  env: { baseUrl: 'AIBRIDGE_ANTHROPIC_BASE_URL', apiKey: 'AIBRIDGE_ANTHROPIC_API_KEY' },
  priceId: 'anthropic',
  fields: [],
  validate: NO_FIELDS,
  configured: KEY_REQUIRED,
  create: (s) => ({
    id: s.name,
    type: 'anthropic',
    prefix: `/${s.name}`,
    requestIdHeader: 'request-id',
    apis: [messagesApi],
    passthrough: [{ methods: ['POST'], path: '/v1/messages/count_tokens', why: 'counts tokens; free' }],
    // The bridge answers the model list itself: the models this caller may use (docs/routing.md).
    modelListing: anthropicModelListing,
    configured: hasKey(s),
    upstreamUrl: (target) => joinUrl(s.baseUrl, target),
    authHeaders: (key?: string): Record<string, string> => {
      const k = key ?? s.apiKey;
      return k ? { 'x-api-key': k } : {};
    },
    errorBody: (status, _code, message) => anthropicErrorBody(status, message),
  }),
};
