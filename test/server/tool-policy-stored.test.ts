import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OpenAIMock } from '../helpers/openai-mock';

/**
 * A Responses answer is stored by the provider as it made it (`store`, the default). The bridge
 * replaces a denied call in the answer it relays; read back by id, the stored answer must not hand
 * the call over whole (docs/governance.md, "Stored responses").
 */
describe('tool-call policy: a stored response read back by id', function () {
  this.timeout(30_000);
  let mock: OpenAIMock;
  let tb: TestBridge;
  let dev: { key: string };
  let other: { key: string };

  before(async () => {
    mock = await new OpenAIMock().start();
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_OPENAI_BASE_URL: mock.url });
    dev = await tb.addUser('stored-denied@example.com', { team: 'guarded' });
    other = await tb.addUser('stored-free@example.com', { team: 'free' });
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [
        {
          id: 'no-rm',
          tool: 'shell',
          argumentPattern: 'rm\\s+-rf',
          action: 'deny',
          scope: 'team',
          subject: 'guarded',
        },
      ],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  const denied = { kind: 'tool' as const, name: 'shell', arguments: { command: 'rm -rf /' } };
  const hasCall = (r: { output: { type: string }[] }) => r.output.some((o) => o.type === 'function_call');

  it('comes back with the denied call replaced, as the answer was; its streamed form is refused', async () => {
    mock.next(denied);
    const made = await client(dev.key).responses.create({ model: 'gpt-5', input: 'clean up' });
    assert.equal(hasCall(made), false, 'the answer had the call replaced');
    // The provider kept the original.
    assert.equal(hasCall(mock.storedResponses.get(made.id) as { output: { type: string }[] }), true);

    const back = await client(dev.key).responses.retrieve(made.id);
    assert.equal(back.id, made.id);
    assert.equal(hasCall(back), false, 'read back, the call is replaced too');
    assert.match(JSON.stringify(back.output), /AI Bridge blocked shell/);

    const streamed = await fetch(`${tb.url}/openai/v1/responses/${made.id}?stream=true`, {
      headers: { authorization: `Bearer ${dev.key}` },
    });
    assert.equal(streamed.status, 400);
    assert.equal(streamed.headers.get('x-aibridge-error-code'), 'unsupported_parameter');
  });

  it('comes back as stored for a caller no deny rule applies to', async () => {
    mock.next(denied);
    const made = await client(other.key).responses.create({ model: 'gpt-5', input: 'clean up' });
    assert.equal(hasCall(made), true);
    const back = await client(other.key).responses.retrieve(made.id);
    assert.equal(hasCall(back), true);
  });
});
