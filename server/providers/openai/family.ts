import {
  hasKey,
  type InstanceSettings,
  joinUrl,
  KEY_REQUIRED,
  NO_FIELDS,
  type ProviderFamily,
} from '../family';
import type { PassthroughRoute, ProviderAdapter, WireApi } from '../types';
import { chatCompletionsApi } from './chat-completions';
import { openaiErrorBody } from './errors';
import { openaiModelListing } from './model-listing';
import { responsesApi, responsesCompactAt } from './responses';
import { responsesHold } from './responses-hold';

/** The free endpoints of OpenAI's v1 API, relative to the `/v1` base. */
export const OPENAI_PASSTHROUGH: readonly PassthroughRoute[] = [
  { methods: ['GET', 'HEAD'], path: '/models', why: 'model list; free' },
  { methods: ['GET', 'HEAD'], path: '/models/:id', why: 'one model; free' },
  {
    methods: ['POST'],
    path: '/responses/input_tokens',
    why: 'counts tokens; free',
    // A count of another member's stored conversation is a fact about it: theirs alone too.
    continuesField: 'previous_response_id',
    conversationField: 'conversation',
    inputField: 'input',
  },
  // Stored responses: their creator's only (`storedResponse`), however many members share the key.
  {
    methods: ['GET'],
    path: '/responses/:id',
    why: "reads one's own stored response; free",
    storedResponse: ':id',
    answerHeld: responsesHold,
  },
  {
    methods: ['GET'],
    path: '/responses/:id/input_items',
    why: "reads one's own stored response; free",
    storedResponse: ':id',
  },
  {
    methods: ['DELETE'],
    path: '/responses/:id',
    why: "deletes one's own stored response; free",
    storedResponse: ':id',
  },
  {
    methods: ['POST'],
    path: '/responses/:id/cancel',
    why: "stops one's own background response; saves cost",
    storedResponse: ':id',
    // It answers with the response.
    answerHeld: responsesHold,
  },
];

/**
 * An OpenAI-shaped instance mounted at `/<name>/v1` (so `OPENAI_BASE_URL=<bridge>/<name>/v1` works
 * for every SDK): the wire APIs and the bearer key; other families built on OpenAI's wire format
 * (openai-compatible, azure-openai) tune it.
 */
export function openaiShapedAdapter(
  s: InstanceSettings,
  type: string,
  over: Partial<
    Pick<ProviderAdapter, 'apis' | 'passthrough' | 'configured' | 'modelListing' | 'keyScopesStoredState'>
  > = {},
): ProviderAdapter {
  const apis: readonly WireApi[] = over.apis ?? [
    chatCompletionsApi,
    responsesApi,
    responsesCompactAt('/responses/compact'),
  ];
  return {
    id: s.name,
    type,
    prefix: `/${s.name}/v1`,
    requestIdHeader: 'x-request-id',
    apis,
    passthrough: over.passthrough ?? OPENAI_PASSTHROUGH,
    configured: over.configured ?? hasKey(s),
    upstreamUrl: (target) => joinUrl(s.baseUrl, target),
    authHeaders: (key?: string): Record<string, string> => {
      const k = key ?? s.apiKey;
      return k ? { authorization: `Bearer ${k}` } : {};
    },
    errorBody: openaiErrorBody,
    ...(over.modelListing ? { modelListing: over.modelListing } : {}),
    ...(over.keyScopesStoredState ? { keyScopesStoredState: true } : {}),
  };
}

/** OpenAI: Chat Completions and Responses metered. The built-in instance `openai` is AIBRIDGE_OPENAI_*. */
export const openaiFamily: ProviderFamily = {
  type: 'openai',
  defaultBaseUrl: 'https://api.openai.com/v1',
  env: { baseUrl: 'AIBRIDGE_OPENAI_BASE_URL', apiKey: 'AIBRIDGE_OPENAI_API_KEY' },
  priceId: 'openai',
  fields: [],
  validate: NO_FIELDS,
  configured: KEY_REQUIRED,
  // The bridge answers the model list itself: the models this caller may use (docs/routing.md).
  create: (s) =>
    openaiShapedAdapter(s, 'openai', {
      passthrough: OPENAI_PASSTHROUGH.filter((r) => !r.path.startsWith('/models')),
      modelListing: openaiModelListing,
      keyScopesStoredState: true,
    }),
};
