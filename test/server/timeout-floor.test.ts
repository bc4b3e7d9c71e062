import assert from 'node:assert/strict';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, ok, post, providersFile } from '../helpers/keyed-upstream';

/**
 * A non-streamed request the provider worked on (it answers 200 with its usage) whose headers came
 * after the bridge's headers timeout: the provider had the whole request and bills what it did.
 */
describe('a request whose answer was too slow to start', function () {
  this.timeout(15_000);
  let up: KeyedUpstream;
  let tb: TestBridge;
  let member: string;

  before(async () => {
    up = await new KeyedUpstream().start();
    const file = await providersFile(await tempDir(), {
      providers: { primary: { type: 'anthropic', baseUrl: up.url, apiKey: 'sk-ant-primary-0123456789' } },
    });
    tb = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file, AIBRIDGE_HEADERS_TIMEOUT_MS: '300' });
    member = (await tb.addUser('slow@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
  });

  it('is answered 504 and recorded at the floor of its body, not as free', async () => {
    up.rule = (h, res) => {
      setTimeout(() => {
        if (!res.destroyed) ok(h, res);
      }, 2_500);
      return 'handled';
    };
    const r = await post(`${tb.url}/primary/v1/messages`, member, {
      model: 'claude-opus-4-6',
      max_tokens: 64_000,
      messages: [{ role: 'user', content: 'write a long essay '.repeat(200) }],
    });
    assert.equal(r.status, 504);
    const [rec] = await tb.interceptions(1);
    assert.equal(rec!.status, 'error');
    assert.equal(rec!.httpStatus, 504);
    assert.equal(rec!.usageEstimated, true);
    assert.ok(rec!.usage.input > 500, `the body is floored as input: ${JSON.stringify(rec!.usage)}`);
    assert.ok((rec!.costUsd ?? 0) > 0, `not free: ${rec!.costUsd}`);
    // A connection the provider refused had nothing sent: that stays free.
    up.rule = (_h, res) => {
      res.socket?.destroy();
      return 'handled';
    };
    const refused = await post(`${tb.url}/primary/v1/messages`, member, {
      model: 'claude-opus-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(refused.status, 502);
    const [cut] = await tb.interceptions(2);
    assert.equal(cut!.costUsd, 0);
  });
});
