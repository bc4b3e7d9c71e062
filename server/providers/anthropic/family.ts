import { hasKey, joinUrl, KEY_REQUIRED, NO_FIELDS, type ProviderFamily } from '../family';
import { anthropicErrorBody } from './errors';
import { messagesApi } from './messages';

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
    passthrough: [
      { methods: ['POST'], path: '/v1/messages/count_tokens', why: 'counts tokens; free' },
      { methods: ['GET', 'HEAD'], path: '/v1/models', why: 'model list; free' },
      { methods: ['GET', 'HEAD'], path: '/v1/models/:id', why: 'one model; free' },
    ],
    configured: hasKey(s),
    upstreamUrl: (target) => joinUrl(s.baseUrl, target),
    authHeaders: async (key?: string): Promise<Record<string, string>> => {
      const k = key ?? s.apiKey;
      return k ? { 'x-api-key': k } : {};
    },
    errorBody: (status, _code, message) => anthropicErrorBody(status, message),
  }),
};
