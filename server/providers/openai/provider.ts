import type { ProviderAdapter } from '../types';
import { chatCompletionsApi } from './chat-completions';
import { openaiErrorBody } from './errors';
import { responsesApi } from './responses';

/** OpenAI, mounted at `/openai/v1` (so `OPENAI_BASE_URL=<bridge>/openai/v1` works for every SDK). */
export const openaiProvider: ProviderAdapter = {
  id: 'openai',
  prefix: '/openai/v1',
  requestIdHeader: 'x-request-id',
  apis: [chatCompletionsApi, responsesApi],
  authHeaders: (apiKey) => ({ authorization: `Bearer ${apiKey}` }),
  errorBody: openaiErrorBody,
};
