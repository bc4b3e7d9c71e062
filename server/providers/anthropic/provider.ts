import type { ProviderAdapter } from '../types';
import { anthropicErrorBody } from './errors';
import { messagesApi } from './messages';

/** Anthropic, mounted at `/anthropic`: the Messages API is metered, a few free endpoints passed through, everything else refused. */
export const anthropicProvider: ProviderAdapter = {
  id: 'anthropic',
  prefix: '/anthropic',
  requestIdHeader: 'request-id',
  apis: [messagesApi],
  passthrough: [
    { methods: ['POST'], path: '/v1/messages/count_tokens', why: 'counts tokens; free' },
    { methods: ['GET', 'HEAD'], path: '/v1/models', why: 'model list; free' },
    { methods: ['GET', 'HEAD'], path: '/v1/models/:id', why: 'one model; free' },
  ],
  authHeaders: (apiKey) => ({ 'x-api-key': apiKey }),
  errorBody: (status, _code, message) => anthropicErrorBody(status, message),
};
