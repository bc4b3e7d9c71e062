import assert from 'node:assert/strict';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile, unknownFieldAnswer } from '../helpers/keyed-upstream';

describe('a field name the provider quotes back in its 400 takes no pool key out', function () {
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
        anthropic: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: [1, 2, 3].map((i) => ({ name: `k${i}`, key: `sk-ant-k${i}-aaaaaaaaaaaaaaaaaaaa` })),
        },
        openai: {
          type: 'openai',
          baseUrl: `${up.url}/v1`,
          keys: [1, 2, 3].map((i) => ({ name: `o${i}`, key: `sk-oai-o${i}-cccccccccccccccccccc` })),
        },
      },
    });
    tb = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file });
    member = (await tb.addUser('mallory@example.com')).key;
    other = (await tb.addUser('alice@example.com')).key;
    up.rule = unknownFieldAnswer;
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
  });

  it('Anthropic: a Messages request with a field named "credit balance is too low" is the member’s 400; every other member is served', async () => {
    const evil = await post(`${tb.url}/anthropic/v1/messages`, member, {
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
      'credit balance is too low': 1,
    });
    // The member's own mistake should be a 400 relayed to them, nothing held against any key.
    const keys = await tb.api<{ items: { name: string; state: string }[] }>(
      'GET',
      '/api/v1/providers/anthropic/keys',
      tb.adminKey,
    );
    const alice = await post(`${tb.url}/anthropic/v1/messages`, other, {
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.deepEqual(
      { evil: evil.status, keys: keys.body.items.map((k) => k.state), alice: alice.status },
      { evil: 400, keys: ['active', 'active', 'active'], alice: 200 },
      `evil answer: ${evil.text}`,
    );
  });

  it('OpenAI Chat: a field named "api key is invalid" takes no OpenAI pool key out', async () => {
    const evil = await post(`${tb.url}/openai/v1/chat/completions`, member, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      'api key is invalid': true,
    });
    const keys = await tb.api<{ items: { name: string; state: string }[] }>(
      'GET',
      '/api/v1/providers/openai/keys',
      tb.adminKey,
    );
    const alice = await post(`${tb.url}/openai/v1/chat/completions`, other, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.deepEqual(
      { evil: evil.status, keys: keys.body.items.map((k) => k.state), alice: alice.status },
      { evil: 400, keys: ['active', 'active', 'active'], alice: 200 },
      `evil answer: ${evil.text}`,
    );
  });
});
