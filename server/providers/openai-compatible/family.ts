import type { ProviderFamily } from '../family';
import { chatCompletions } from '../openai/chat-completions';
import { OPENAI_PASSTHROUGH, openaiShapedAdapter } from '../openai/family';
import { responsesApi } from '../openai/responses';

/**
 * Any server speaking OpenAI's `/v1/chat/completions` and `/v1/responses` (vLLM, Ollama, LM Studio,
 * OpenRouter). Its quirk: many stream no usage unless asked, so the Chat Completions API it gets
 * always asks (`stream_options.include_usage`) and hides the usage chunk from a client that did
 * not ask. The key is optional (a local server needs none); prices come from the instance's
 * `prices` (a table, or "free"), since the price data knows no self-hosted model. A server that
 * rejects `stream_options` takes `"includeUsage": false`.
 */
export const openaiCompatibleFamily: ProviderFamily = {
  type: 'openai-compatible',
  defaultBaseUrl: undefined,
  priceId: null,
  fields: ['includeUsage'],
  validate: (entry) =>
    entry.includeUsage === undefined || typeof entry.includeUsage === 'boolean'
      ? undefined
      : { field: 'includeUsage', message: 'expected true or false' },
  configured: () => true,
  create: (s) =>
    openaiShapedAdapter(s, 'openai-compatible', {
      apis: [chatCompletions({ forceUsage: s.options.includeUsage !== false }), responsesApi],
      passthrough: OPENAI_PASSTHROUGH.filter((r) => r.path.startsWith('/models')),
      configured: true,
    }),
};
