import assert from 'node:assert/strict';
import type { InterceptionStart } from '../../server/core/facts';
import { messagesApi } from '../../server/providers/anthropic/messages';
import { generateContentAt } from '../../server/providers/gemini/generate-content';
import { chatCompletionsApi } from '../../server/providers/openai/chat-completions';
import { responsesApi } from '../../server/providers/openai/responses';
import type { WireApi } from '../../server/providers/types';
import { Governance } from '../../server/spend/governance';
import { PriceBook } from '../../server/spend/prices';

const responses = responsesApi;
const gemini25 = generateContentAt('/v1beta/models/gemini-2.5-pro:generateContent');

function start(body: Record<string, unknown>): InterceptionStart {
  return {
    id: 'int_x',
    principal: { user: { id: 'u', email: 'u@example.com', team: null, role: 'member' } } as never,
    provider: 'openai',
    api: responses.name,
    client: 'test',
    request: responses.describeRequest(body, {}),
    startedAt: new Date(),
  };
}

describe('the budget estimate of a request whose body does not bound its cost', () => {
  // Only the estimate is exercised: the other collaborators are never reached.
  const gov = new Governance(
    undefined as never,
    undefined as never,
    undefined as never,
    new PriceBook(),
    undefined as never,
    4096,
    0.25,
  );
  const capped = { model: 'gpt-4o', max_output_tokens: 40, input: 'hi' };

  it('is the body and output cap when they bound it', () => {
    const usd = gov.estimateUsd(start(capped), JSON.stringify(capped).length);
    assert.ok(usd > 0 && usd < 0.01, `a tiny capped request is cheap, got ${usd}`);
  });

  it('is at least the floor with previous_response_id, a server tool, a file reference or no output cap', () => {
    const cases: Record<string, unknown>[] = [
      { ...capped, previous_response_id: 'resp_1' },
      { ...capped, tools: [{ type: 'web_search' }] },
      { ...capped, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] },
      { model: 'gpt-4o', input: 'hi' },
      { ...capped, tools: [{ type: 'code_interpreter', container: { type: 'auto' } }] },
      { ...capped, prompt: { id: 'pmpt_1', variables: { q: 'hi' } } },
      // No model: a stored prompt picks it, and the body prices nothing.
      { prompt: { id: 'pmpt_1' }, max_output_tokens: 40, input: 'hi' },
      // A name the price table does not know (a deployment's): the answer may name a priced model.
      { ...capped, model: 'my-private-deployment' },
    ];
    for (const body of cases) {
      const usd = gov.estimateUsd(start(body), JSON.stringify(body).length);
      assert.ok(usd >= 0.25, `${JSON.stringify(body)} → ${usd}`);
    }
  });

  it('is at least the floor for content the provider fetches by URL and tools it runs, on every API', () => {
    const of = (api: WireApi, provider: string, body: Record<string, unknown>): number => {
      const s = { ...start({}), provider, api: api.name, request: api.describeRequest(body, {}) };
      return gov.estimateUsd(s, JSON.stringify(body).length);
    };
    const claude = { model: 'claude-sonnet-4-5', max_tokens: 1 };
    const gpt = { model: 'gpt-4o', max_tokens: 1 };
    const gemini = { generationConfig: { maxOutputTokens: 1 } };
    const cases: [WireApi, string, Record<string, unknown>][] = [
      [
        messagesApi,
        'anthropic',
        {
          ...claude,
          messages: [
            {
              role: 'user',
              content: [{ type: 'document', source: { type: 'url', url: 'https://x/big.pdf' } }],
            },
          ],
        },
      ],
      [
        messagesApi,
        'anthropic',
        { ...claude, messages: [], mcp_servers: [{ type: 'url', url: 'https://m' }] },
      ],
      [
        chatCompletionsApi,
        'openai',
        {
          ...gpt,
          messages: [
            { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/a.png' } }] },
          ],
        },
      ],
      [
        responses,
        'openai',
        {
          ...capped,
          input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/a.png' }] }],
        },
      ],
      [
        responses,
        'openai',
        {
          ...capped,
          input: [{ role: 'user', content: [{ type: 'input_file', file_url: 'https://x/a.pdf' }] }],
        },
      ],
      [
        messagesApi,
        'anthropic',
        {
          ...claude,
          messages: [
            {
              role: 'user',
              content: [
                {
                  type: 'document',
                  source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' },
                },
              ],
            },
          ],
        },
      ],
      [
        chatCompletionsApi,
        'openai',
        {
          ...gpt,
          messages: [
            {
              role: 'user',
              content: [
                {
                  type: 'file',
                  file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' },
                },
              ],
            },
          ],
        },
      ],
      [
        responses,
        'openai',
        {
          ...capped,
          input: [
            {
              role: 'user',
              content: [
                { type: 'input_file', filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' },
              ],
            },
          ],
        },
      ],
      [
        gemini25,
        'google',
        {
          ...gemini,
          contents: [{ parts: [{ inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } }] }],
        },
      ],
      [
        gemini25,
        'google',
        { ...gemini, contents: [{ parts: [{ inline_data: { mime_type: 'video/mp4', data: 'AAAA' } }] }] },
      ],
      [
        chatCompletionsApi,
        'openai',
        {
          ...gpt,
          model: 'gpt-4o-search-preview',
          web_search_options: {},
          messages: [{ role: 'user', content: 'news?' }],
        },
      ],
      [
        gemini25,
        'google',
        { ...gemini, contents: [{ parts: [{ fileData: { fileUri: 'https://youtu.be/x' } }] }] },
      ],
      [
        gemini25,
        'google',
        { ...gemini, contents: [{ parts: [{ text: 'hi' }] }], tools: [{ googleSearch: {} }] },
      ],
      [
        gemini25,
        'google',
        { ...gemini, contents: [{ parts: [{ text: 'hi' }] }], tools: [{ urlContext: {} }] },
      ],
    ];
    for (const [api, provider, body] of cases) {
      const usd = of(api, provider, body);
      assert.ok(usd >= 0.25, `${JSON.stringify(body)} → ${usd}`);
    }
    // An image inline (a data: URL) is in the body, which bounds it.
    const inline = {
      ...gpt,
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
      ],
    };
    assert.ok(of(chatCompletionsApi, 'openai', inline) < 0.01);
  });

  it('counts the output cap once per answer asked for (n, candidateCount)', () => {
    const one = chatCompletionsApi.describeRequest({ model: 'gpt-4o', max_tokens: 100, messages: [] }, {});
    const five = chatCompletionsApi.describeRequest(
      { model: 'gpt-4o', max_tokens: 100, n: 5, messages: [] },
      {},
    );
    assert.equal(one.maxOutputTokens, 100);
    assert.equal(five.maxOutputTokens, 500);
    const g = gemini25.describeRequest({ generationConfig: { maxOutputTokens: 100, candidateCount: 3 } }, {});
    assert.equal(g.maxOutputTokens, 300);
    // Google takes either spelling of each field: the most any spelling asks for is reserved.
    const snake = gemini25.describeRequest(
      { generationConfig: {}, generation_config: { max_output_tokens: 65536, candidate_count: 8 } },
      {},
    );
    assert.equal(snake.maxOutputTokens, 65536 * 8);
    const mixed = gemini25.describeRequest(
      {
        generationConfig: { maxOutputTokens: 10, candidateCount: 2 },
        generation_config: { maxOutputTokens: 500 },
      },
      {},
    );
    assert.equal(mixed.maxOutputTokens, 1000);
  });

  it('counts the default output cap once per answer when the request sets no cap', () => {
    const of = (body: Record<string, unknown>): number => {
      const s = {
        ...start({}),
        api: chatCompletionsApi.name,
        request: chatCompletionsApi.describeRequest(body, {}),
      };
      return gov.estimateUsd(s, JSON.stringify(body).length);
    };
    const cappedOne = of({ model: 'gpt-4o', max_tokens: 4096, messages: [] });
    const uncappedEight = of({ model: 'gpt-4o', n: 8, messages: [] });
    const cappedEight = of({ model: 'gpt-4o', n: 8, max_tokens: 4096, messages: [] });
    // Eight answers of the default 4,096 tokens each cost what eight capped at 4,096 do (the bodies
    // differ by a few bytes of input).
    assert.ok(Math.abs(uncappedEight - cappedEight) < 1e-4, `${uncappedEight} vs ${cappedEight}`);
    assert.ok(uncappedEight > 7 * cappedOne, `${uncappedEight} vs ${cappedOne}`);
  });

  it('prices a routed request at its dearest target, not at the name it asked for', () => {
    const body = { model: 'fast', max_output_tokens: 1000, input: 'hi' };
    const bytes = JSON.stringify(body).length;
    const own = gov.estimateUsd(start(body), bytes);
    assert.equal(own, 0.25, 'a route name is no model the price table knows: the floor');
    const mini = gov.estimateUsd(start(body), bytes, [{ provider: 'openai', model: 'gpt-4o-mini' }]);
    const both = gov.estimateUsd(start(body), bytes, [
      { provider: 'openai', model: 'gpt-4o-mini' },
      { provider: 'openai', model: 'gpt-4o' },
    ]);
    assert.ok(mini > 0, 'priced as its target');
    assert.ok(both > mini * 10, `the dearer target bounds it: ${both} vs ${mini}`);
  });
});

describe('the budget estimate of a model whose images or audio cost more than its text', () => {
  const prices = new PriceBook();
  const gov = new Governance(
    undefined as never,
    undefined as never,
    undefined as never,
    prices,
    undefined as never,
    4096,
    0,
  );

  it('prices the whole output cap as images on an image model, as audio on an audio model, as text elsewhere', () => {
    const at = (provider: string, model: string): InterceptionStart => ({
      ...start({ model, max_output_tokens: 1400, input: 'hi' }),
      provider,
      request: {
        ...start({ model, max_output_tokens: 1400, input: 'hi' }).request,
        model,
        maxOutputTokens: 1400,
      },
    });
    const text = (provider: string, model: string): number =>
      prices.cost(provider, model, { input: 10, output: 1400, cacheRead: 0, cacheWrite: 0, reasoning: 0 })!;
    // gemini-2.5-flash-image: $30/M for image output against $2.50/M for text.
    const image = gov.estimateUsd(at('gemini', 'gemini-2.5-flash-image'), 40);
    assert.ok(image >= 1400 * (30 / 1e6), `image output reserved at the image price: ${image}`);
    assert.ok(image > 10 * text('gemini', 'gemini-2.5-flash-image'));
    // gpt-audio: $64/M for audio output against $10/M for text.
    const audio = gov.estimateUsd(at('openai', 'gpt-audio'), 40);
    assert.ok(audio >= 1400 * (64 / 1e6), `audio output reserved at the audio price: ${audio}`);
    // A text model is reserved as before.
    const plain = gov.estimateUsd(at('openai', 'gpt-4o'), 40);
    assert.ok(Math.abs(plain - text('openai', 'gpt-4o')) < 1e-4, `${plain}`);
  });
});
