import assert from 'node:assert/strict';
import pino from 'pino';
import { Recorder } from '../../server/audit/recorder';
import type { InterceptionStart } from '../../server/core/facts';
import { Metrics } from '../../server/metrics';
import { PriceBook } from '../../server/spend/prices';
import type { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { NewInterception } from '../../server/store/types';

/** What the recorder prices an answer at when the answer names the tier that served it. */
async function priced(
  provider: string,
  tier: string | undefined,
  prices = new PriceBook([], {
    openai: { priceId: 'openai', prices: undefined },
    'openai-eu': { priceId: 'openai', prices: undefined },
    azure: { priceId: 'azure', prices: undefined },
    groq: { priceId: null, prices: { 'gpt-5': { inputPerMTok: 1.25, outputPerMTok: 10 } } },
  }),
): Promise<NewInterception> {
  let stored: NewInterception | undefined;
  const store = {
    appendInterception: async (rec: NewInterception) => {
      stored = rec;
    },
  } as unknown as EmbeddedStore;
  const recorder = new Recorder(store, pino({ level: 'silent' }), prices, new Metrics());
  const now = new Date();
  const start: InterceptionStart = {
    id: `int_${provider}_${tier}`,
    principal: {
      user: { id: 'usr_1', email: 'a@example.com', team: null, role: 'member', createdAt: now.toISOString() },
      key: { id: 'key_1', userId: 'usr_1', createdAt: now.toISOString() },
    } as unknown as InterceptionStart['principal'],
    provider,
    api: 'responses',
    client: 'codex',
    request: {
      model: 'gpt-5',
      prompt: 'hi',
      sessionId: null,
      maxOutputTokens: 16,
      toolResults: [],
      newMessages: [],
    },
    startedAt: now,
  };
  await recorder.finish(start, {
    status: 'ok',
    error: null,
    httpStatus: 200,
    streamed: false,
    endedAt: now,
    upstreamRequestId: null,
    response: {
      usage: { input: 800_000, cacheRead: 200_000, cacheWrite: 0, output: 100_000, reasoning: 40_000 },
      toolCalls: [],
      model: 'gpt-5',
      error: null,
      ...(tier === undefined ? {} : { serviceTier: tier }),
    },
  });
  assert.ok(stored, 'a record was stored');
  return stored;
}

describe('an answer is billed at the tier that served it', () => {
  it('OpenAI Flex processing (Codex service_tier "flex") at half the standard price, on every openai instance', async () => {
    const standard = await priced('openai', 'default');
    assert.equal(standard.costSource, undefined);
    assert.ok(standard.costUsd! > 1, `a standard price: ${standard.costUsd}`);
    assert.equal((await priced('openai', undefined)).costUsd, standard.costUsd);
    for (const provider of ['openai', 'openai-eu']) {
      const flex = await priced(provider, 'flex');
      assert.equal(flex.costSource, 'flex-tier', provider);
      assert.equal(flex.costUsd!.toFixed(10), (standard.costUsd! / 2).toFixed(10), provider);
    }
    const priority = await priced('openai', 'priority');
    assert.equal(priority.costSource, 'priority-tier');
    assert.equal(priority.costUsd!.toFixed(10), (standard.costUsd! * 2).toFixed(10));
  });

  it('flex is not discounted where the price is not OpenAI’s standard price: Azure’s data, an instance’s own table, an admin’s price', async () => {
    const azure = await priced('azure', 'default');
    assert.ok(azure.costUsd! > 0);
    const azureFlex = await priced('azure', 'flex');
    assert.equal(azureFlex.costSource, undefined);
    assert.equal(azureFlex.costUsd, azure.costUsd);

    // Groq answers `flex` at its on-demand price: an instance's own table is what is paid.
    const groq = await priced('groq', 'flex');
    assert.equal(groq.costSource, 'instance');
    assert.equal(groq.costUsd, (await priced('groq', 'default')).costUsd);

    const admin = new PriceBook([PriceBook.validateBody('gpt-5', { input_mtok: 2, output_mtok: 8 })], {
      openai: { priceId: 'openai', prices: undefined },
    });
    const negotiated = await priced('openai', 'default', admin);
    const negotiatedFlex = await priced('openai', 'flex', admin);
    assert.equal(negotiatedFlex.costSource, undefined);
    assert.equal(negotiatedFlex.costUsd, negotiated.costUsd);
  });
});
