import assert from 'node:assert/strict';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

// OpenRouter's real 402: the account can afford some requests, not this one's max_tokens
// (github.com/QwenLM/qwen-code/issues/73, continuedev/continue#10298).
const AFFORD = 4000;
describe('an OpenAI-compatible 402 scaled by the request’s max_tokens (OpenRouter) takes no pool key out', function () {
  this.timeout(30000);
  let up: KeyedUpstream;
  let tb: TestBridge;
  let member: string;
  let other: string;
  before(async () => {
    up = await new KeyedUpstream().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        openrouter: {
          type: 'openai-compatible',
          baseUrl: `${up.url}/v1`,
          keys: [1, 2, 3].map((i) => ({ name: `or${i}`, key: `sk-or-v1-${i}eeeeeeeeeeeeeeeeeeeeeeee` })),
        },
      },
    });
    tb = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file });
    member = (await tb.addUser('big@example.com')).key;
    other = (await tb.addUser('small@example.com')).key;
    up.rule = (h) => {
      const asked = Number(h.body.max_tokens ?? 65536);
      if (asked <= AFFORD) return undefined;
      return {
        status: 402,
        body: {
          error: {
            message: `This request requires more credits, or fewer max_tokens. You requested up to ${asked} tokens, but can only afford ${AFFORD}. To increase, visit https://openrouter.ai/settings/credits and add more credits`,
            code: 402,
            metadata: { provider_name: null },
          },
        },
      };
    };
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
  });

  it('a member asking for 32000 max_tokens gets the 402; members asking for 1000 are served', async () => {
    const big = await post(`${tb.url}/openrouter/v1/chat/completions`, member, {
      model: 'anthropic/claude-sonnet-4.5',
      max_tokens: 32000,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const small = await post(`${tb.url}/openrouter/v1/chat/completions`, other, {
      model: 'anthropic/claude-sonnet-4.5',
      max_tokens: 1000,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const keys = await tb.api<{ items: { state: string }[] }>(
      'GET',
      '/api/v1/providers/openrouter/keys',
      tb.adminKey,
    );
    assert.deepEqual(
      { big: big.status, small: small.status, keys: keys.body.items.map((k) => k.state) },
      { big: 402, small: 200, keys: ['active', 'active', 'active'] },
      big.text,
    );
  });
});
