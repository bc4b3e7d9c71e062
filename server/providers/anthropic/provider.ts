import type { ProviderAdapter } from '../types';
import { anthropicErrorBody } from './errors';
import { messagesApi } from './messages';

/** Anthropic, mounted at `/anthropic`: the Messages API is metered, everything else passed through. */
export const anthropicProvider: ProviderAdapter = {
  id: 'anthropic',
  prefix: '/anthropic',
  requestIdHeader: 'request-id',
  apis: [messagesApi],
  authHeaders: (apiKey) => ({ 'x-api-key': apiKey }),
  errorBody: (status, _code, message) => anthropicErrorBody(status, message),
};
