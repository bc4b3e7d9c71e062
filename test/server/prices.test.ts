import assert from 'node:assert/strict';
import { calcPrice, extractUsage, findProvider } from '@pydantic/genai-prices';
import { geminiUsage } from '../../server/providers/gemini/usage';
import { PriceBook } from '../../server/spend/prices';

describe('the price book', () => {
  it('costs every Anthropic and OpenAI model exactly as genai-prices does, tiers included', () => {
    const book = new PriceBook();
    let compared = 0;
    for (const providerId of ['anthropic', 'openai']) {
      const provider = findProvider({ providerId })!;
      for (const m of provider.models) {
        const id = m.id;
        for (const [input, cacheRead, cacheWrite, output] of [
          [25, 100, 7, 12],
          [1000, 0, 0, 500],
          [150_000, 60_000, 10_000, 4000],
          [0, 0, 0, 1],
        ] as const) {
          const usage = { input, cacheRead, cacheWrite, output, reasoning: 0 };
          const ours = book.cost(providerId, id, usage);
          const theirs = calcPrice(
            {
              input_tokens: input + cacheRead + cacheWrite,
              cache_read_tokens: cacheRead,
              cache_write_tokens: cacheWrite,
              output_tokens: output,
            },
            id,
            { providerId },
          );
          if (theirs === null) {
            assert.equal(ours, null, `${id}`);
            continue;
          }
          assert.ok(ours !== null, `${providerId}/${id} unpriced`);
          assert.ok(
            Math.abs(ours - theirs.total_price) < 1e-12,
            `${providerId}/${id} ${JSON.stringify(usage)}: ${ours} vs ${theirs.total_price}`,
          );
          compared++;
        }
      }
    }
    assert.ok(compared > 200, `${compared} comparisons`);
  });

  it('costs Gemini audio in and images out at their own prices, for every Google model as genai-prices does', () => {
    const book = new PriceBook();
    // An answer as Gemini reports it: audio in the prompt and the cache, an image and text out.
    const usageMetadata = {
      promptTokenCount: 12_000,
      cachedContentTokenCount: 4000,
      candidatesTokenCount: 1300,
      thoughtsTokenCount: 50,
      totalTokenCount: 13_350,
      promptTokensDetails: [
        { modality: 'TEXT', tokenCount: 2000 },
        { modality: 'AUDIO', tokenCount: 10_000 },
      ],
      cacheTokensDetails: [{ modality: 'AUDIO', tokenCount: 4000 }],
      candidatesTokensDetails: [
        { modality: 'TEXT', tokenCount: 10 },
        { modality: 'IMAGE', tokenCount: 1290 },
      ],
    };
    const ours = geminiUsage(usageMetadata);
    assert.deepEqual(ours, {
      input: 8000,
      cacheRead: 4000,
      cacheWrite: 0,
      output: 1350,
      reasoning: 50,
      inputAudio: 6000,
      cacheReadAudio: 4000,
      outputImage: 1290,
    });
    let dearer = 0;
    for (const m of findProvider({ providerId: 'google' })!.models) {
      const extracted = extractUsage(findProvider({ providerId: 'google' })!, {
        usageMetadata,
        modelVersion: m.id,
      });
      const theirs = calcPrice(extracted.usage, m.id, { providerId: 'google' });
      const cost = book.cost('google', m.id, ours);
      if (theirs === null) continue;
      assert.ok(
        cost !== null && Math.abs(cost - theirs.total_price) < 1e-12,
        `${m.id}: ${cost} vs ${theirs.total_price}`,
      );
      const flat = book.cost('google', m.id, { ...ours, inputAudio: 0, cacheReadAudio: 0, outputImage: 0 })!;
      if (cost > flat * 1.5) dearer++;
    }
    assert.ok(dearer >= 3, `${dearer} models price audio or images above text`);
  });

  it('forgets a cached price when an admin overrides it', () => {
    const book = new PriceBook();
    const u = { input: 100_000, output: 0, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    assert.equal(book.cost('anthropic', 'claude-sonnet-4-5', u), 0.3);
    book.setOverride(PriceBook.validateBody('claude-sonnet-4-5', { input_mtok: 1, output_mtok: 2 }));
    assert.equal(book.cost('anthropic', 'claude-sonnet-4-5', u), 0.1);
    book.deleteOverride('claude-sonnet-4-5');
    assert.equal(book.cost('anthropic', 'claude-sonnet-4-5', u), 0.3);
  });

  it('an override keeps the fees it does not name (web searches, one-hour writes) from the price data', () => {
    const book = new PriceBook();
    const searches = { input: 5000, output: 300, cacheRead: 0, cacheWrite: 0, reasoning: 0, webSearches: 3 };
    const hour = {
      input: 10,
      output: 100,
      cacheRead: 0,
      cacheWrite: 10_000,
      cacheWrite1h: 10_000,
      reasoning: 0,
    };
    const model = 'claude-sonnet-4-5-20250929';
    const dataHour = book.cost('anthropic', model, hour)!;
    book.setOverride(
      PriceBook.validateBody(model, {
        input_mtok: 1,
        output_mtok: 2,
        cache_read_mtok: 0.1,
        cache_write_mtok: 1.5,
      }),
    );
    // Tokens at the override's prices, the searches at the data's $10 per 1,000 (they were $0).
    assert.equal(book.cost('anthropic', model, searches)!.toFixed(6), (0.005 + 0.0006 + 0.03).toFixed(6));
    // One-hour writes at the data's one-hour price (they were at the override's five-minute price).
    const hourPrice = (dataHour - (10 * 3 + 100 * 15) / 1e6) / 10_000;
    assert.equal(
      book.cost('anthropic', model, hour)!.toFixed(8),
      ((10 * 1 + 100 * 2) / 1e6 + 10_000 * hourPrice).toFixed(8),
    );
    // Named, the override's own win.
    book.setOverride(
      PriceBook.validateBody(model, {
        input_mtok: 1,
        output_mtok: 2,
        cache_write_mtok: 1.5,
        cache_write_1h_mtok: 2,
        web_searches_kcount: 5,
      }),
    );
    assert.equal(book.cost('anthropic', model, searches)!.toFixed(6), (0.005 + 0.0006 + 0.015).toFixed(6));
    assert.equal(book.cost('anthropic', model, hour)!.toFixed(8), ((10 + 200 + 20_000) / 1e6).toFixed(8));
  });

  it('a Bedrock profile is priced from AWS’s entry, never below the model’s own (long context, one-hour writes) scaled by AWS’s premium', () => {
    const book = new PriceBook([], { bedrock: { priceId: 'anthropic', prices: undefined } });
    const model = 'claude-sonnet-4-5-20250929';
    const regional = { priceId: 'aws', model: `us.anthropic.${model}-v1:0` };
    const global = { priceId: 'aws', model: `global.anthropic.${model}-v1:0` };
    const short = { input: 1000, output: 1000, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    const anthropic = (u: typeof short) => book.cost('anthropic', model, u)!;
    const at = (u: typeof short, as: typeof regional) => book.cost('bedrock', model, u, undefined, as)!;
    assert.equal(at(short, regional).toFixed(8), (anthropic(short) * 1.1).toFixed(8), 'regional: 10% above');
    assert.equal(at(short, global).toFixed(8), anthropic(short).toFixed(8), 'global: the list price');
    // Past 200k input the Anthropic entry's tier applies; AWS's flat entry would bill it at 55%.
    const long = { ...short, input: 500_000 };
    assert.ok(anthropic(long) > anthropic(short) * 100);
    assert.equal(at(long, regional).toFixed(8), (anthropic(long) * 1.1).toFixed(8));
    assert.equal(at(long, global).toFixed(8), anthropic(long).toFixed(8));
    const hour = { ...short, cacheWrite: 100_000, cacheWrite1h: 100_000 };
    assert.equal(
      at(hour, global).toFixed(8),
      anthropic(hour).toFixed(8),
      'one-hour writes at their own price',
    );
  });

  describe('per provider instance', () => {
    const usage = { input: 1000, cacheRead: 0, cacheWrite: 0, output: 100, reasoning: 0 };
    const instances = {
      ollama: { priceId: null, prices: 'free' as const },
      vllm: { priceId: null, prices: { 'llama3.2': { inputPerMTok: 2, outputPerMTok: 4 } } },
      lmstudio: { priceId: null, prices: undefined },
      'azure-eu': { priceId: 'azure', prices: undefined },
      backup: { priceId: 'anthropic', prices: undefined },
    };

    it('prices by the family’s price-data id, the instance’s table, or $0 on purpose for "free"', () => {
      const book = new PriceBook([], instances);
      assert.deepEqual(book.price('ollama', 'anything', usage), {
        costUsd: 0,
        priceKnown: true,
        costSource: 'free',
      });
      assert.deepEqual(book.price('vllm', 'llama3.2', usage), {
        costUsd: (1000 * 2 + 100 * 4) / 1e6,
        priceKnown: true,
        costSource: 'instance',
      });
      assert.deepEqual(book.price('vllm', 'qwen3', usage), { costUsd: null, priceKnown: false });
      assert.deepEqual(book.price('lmstudio', 'gpt-4o', usage), { costUsd: null, priceKnown: false });
      const azure = calcPrice({ input_tokens: 1000, output_tokens: 100 }, 'gpt-4o', { providerId: 'azure' })!;
      assert.equal(book.cost('azure-eu', 'gpt-4o', usage), azure.total_price);
      const anthropic = new PriceBook().cost('anthropic', 'claude-sonnet-4-5', usage);
      assert.equal(book.cost('backup', 'claude-sonnet-4-5', usage), anthropic);
    });

    it('an instance’s table prices cache writes, one-hour writes and web searches when it names them', () => {
      const book = new PriceBook([], {
        anth2: {
          priceId: 'anthropic',
          prices: {
            m: {
              inputPerMTok: 3,
              outputPerMTok: 15,
              cacheReadPerMTok: 0.3,
              cacheWritePerMTok: 3.75,
              cacheWrite1hPerMTok: 6,
              webSearchesPerThousand: 10,
            },
          },
        },
      });
      const u = {
        input: 100,
        output: 100,
        cacheRead: 0,
        cacheWrite: 20_000,
        cacheWrite1h: 10_000,
        reasoning: 0,
        webSearches: 2,
      };
      const want = (100 * 3 + 100 * 15 + 10_000 * 3.75 + 10_000 * 6) / 1e6 + 0.02;
      assert.equal(book.cost('anth2', 'm', u)!.toFixed(8), want.toFixed(8));
    });

    it('applies an admin override naming the instance, even where the price data has no entry', () => {
      const o = { model: 'qwen3', provider: 'lmstudio', input_mtok: 1, output_mtok: 1, updatedAt: '' };
      const book = new PriceBook([o], instances);
      assert.equal(book.cost('lmstudio', 'qwen3', usage), 1100 / 1e6);
      assert.equal(book.cost('vllm', 'qwen3', usage), null, 'only the instance it names');
    });
  });
});
