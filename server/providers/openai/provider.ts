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
  passthrough: [
    { methods: ['GET', 'HEAD'], path: '/models', why: 'model list; free' },
    { methods: ['GET', 'HEAD'], path: '/models/:id', why: 'one model; free' },
    { methods: ['POST'], path: '/responses/input_tokens', why: 'counts tokens; free' },
    { methods: ['GET'], path: '/responses/:id', why: 'reads a stored response; free' },
    { methods: ['GET'], path: '/responses/:id/input_items', why: 'reads a stored response; free' },
    { methods: ['DELETE'], path: '/responses/:id', why: 'deletes a stored response; free' },
    { methods: ['POST'], path: '/responses/:id/cancel', why: 'stops a background response; saves cost' },
  ],
  authHeaders: (apiKey) => ({ authorization: `Bearer ${apiKey}` }),
  errorBody: openaiErrorBody,
};
