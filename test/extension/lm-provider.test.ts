import assert from 'node:assert/strict';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { AnthropicMock, MOCK_TEXT } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

const FAKE = pathToFileURL('test/helpers/fake-vscode-lm.mjs').href;
// `vscode` exists only inside VS Code: resolve it to the fake for this file's dynamic imports.
register(
  `data:text/javascript,${encodeURIComponent(
    `export async function resolve(s, c, n) { return s === 'vscode' ? { url: ${JSON.stringify(FAKE)}, shortCircuit: true } : n(s, c); }`,
  )}`,
);

interface FakeVscode {
  LanguageModelTextPart: new (v: string) => { value: string };
  LanguageModelToolCallPart: new (
    id: string,
    name: string,
    input: object,
  ) => { callId: string; name: string; input: object };
  LanguageModelToolResultPart: new (id: string, content: unknown[]) => object;
  registered: { vendor: string; provider: Record<string, (...a: unknown[]) => unknown> }[];
  lm: Record<string, unknown>;
}

function token(): {
  isCancellationRequested: boolean;
  onCancellationRequested: (cb: () => void) => { dispose(): void };
  cancel(): void;
} {
  const cbs: (() => void)[] = [];
  const t = {
    isCancellationRequested: false,
    onCancellationRequested: (cb: () => void) => {
      cbs.push(cb);
      return { dispose() {} };
    },
    cancel() {
      t.isCancellationRequested = true;
      for (const cb of cbs) cb();
    },
  };
  return t;
}

describe("extension: the aibridge language model provider against VS Code's API surface", function () {
  this.timeout(30_000);
  let mock: AnthropicMock;
  let tb: TestBridge;
  let vs: FakeVscode;
  let mod: typeof import('../../extension/lm/lm-provider');
  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
    vs = (await import(FAKE)) as FakeVscode;
    mod = await import('../../extension/lm/lm-provider');
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('is not registered on a VS Code without the API', () => {
    const saved = vs.lm.registerLanguageModelChatProvider;
    delete vs.lm.registerLanguageModelChatProvider;
    try {
      assert.equal(mod.registerBridgeChatModels({ credentials: () => undefined }), undefined);
    } finally {
      vs.lm.registerLanguageModelChatProvider = saved;
    }
  });

  it('lists models when signed in, answers with text and tool calls, maps refusals to readable errors', async () => {
    const dev = await tb.addUser('lm-user@example.com', { team: 'ide' });
    let creds: { url: string; key: string } | undefined;
    assert.ok(mod.registerBridgeChatModels({ credentials: () => creds, models: ['claude-sonnet-4-5'] }));
    const { vendor, provider } = vs.registered.at(-1)!;
    assert.equal(vendor, 'aibridge');
    assert.deepEqual(provider.provideLanguageModelChatInformation!({ silent: true }, token()), []);
    creds = { url: tb.url, key: dev.key };
    const [model] = provider.provideLanguageModelChatInformation!({ silent: true }, token()) as {
      id: string;
    }[];
    assert.equal(model!.id, 'claude-sonnet-4-5');

    const user = { role: 1, content: [new vs.LanguageModelTextPart('Say hello')] };
    const got: unknown[] = [];
    await provider.provideLanguageModelChatResponse!(
      model,
      [user],
      {},
      { report: (p: unknown) => got.push(p) },
      token(),
    );
    assert.equal(got.map((p) => (p as { value: string }).value).join(''), MOCK_TEXT);
    assert.ok(got.every((p) => p instanceof vs.LanguageModelTextPart));

    mock.next({ kind: 'tool', name: 'get_weather', input: { city: 'Paris' } });
    const calls: unknown[] = [];
    const tools = [{ name: 'get_weather', description: 'weather', inputSchema: { type: 'object' } }];
    await provider.provideLanguageModelChatResponse!(
      model,
      [user],
      { tools },
      { report: (p: unknown) => calls.push(p) },
      token(),
    );
    const call = calls.find((p) => p instanceof vs.LanguageModelToolCallPart) as {
      callId: string;
      name: string;
      input: object;
    };
    assert.ok(call);
    assert.deepEqual([call.name, call.input], ['get_weather', { city: 'Paris' }]);

    const followUp = [
      user,
      { role: 2, content: [call] },
      {
        role: 1,
        content: [new vs.LanguageModelToolResultPart(call.callId, [new vs.LanguageModelTextPart('Sunny')])],
      },
    ];
    await provider.provideLanguageModelChatResponse!(
      model,
      followUp,
      { tools },
      { report: () => {} },
      token(),
    );
    const sent = JSON.parse(String(mock.messageRequests().at(-1)!.body)) as {
      messages: { content: unknown[] }[];
    };
    assert.deepEqual(sent.messages.at(-1)!.content[0], {
      type: 'tool_result',
      tool_use_id: call.callId,
      content: 'Sunny',
    });

    mock.next({ kind: 'error', status: 429, type: 'rate_limit_error', message: 'Slow down, please.' });
    await assert.rejects(
      provider.provideLanguageModelChatResponse!(
        model,
        [user],
        {},
        { report: () => {} },
        token(),
      ) as Promise<void>,
      /AI Bridge: Slow down, please\./,
    );

    const recs = await tb.interceptions(4, dev.key);
    assert.ok(recs.every((r) => r.client === 'vscode-chat' && r.sessionId?.startsWith('vscode-chat-')));
    assert.equal(new Set(recs.map((r) => r.sessionId)).size, 1, 'one conversation, one session');
    assert.ok((await provider.provideTokenCount!(model, 'abcdefgh', token())) === 2);
  });

  it("the chat's cancellation token aborts the upstream request", async () => {
    const dev = await tb.addUser('lm-cancel@example.com', { team: 'ide' });
    assert.ok(mod.registerBridgeChatModels({ credentials: () => ({ url: tb.url, key: dev.key }) }));
    const { provider } = vs.registered.at(-1)!;
    mock.next({ kind: 'drip', count: 100, delayMs: 50 });
    const t = token();
    const got: unknown[] = [];
    await provider.provideLanguageModelChatResponse!(
      { id: 'claude-sonnet-4-5', maxOutputTokens: 64 },
      [{ role: 1, content: [new vs.LanguageModelTextPart('long')] }],
      {},
      {
        report: (p: unknown) => {
          got.push(p);
          t.cancel();
        },
      },
      t,
    );
    assert.ok(got.length >= 1 && got.length < 100);
    const [rec] = await tb.interceptions(1, dev.key);
    assert.equal(rec!.status, 'client_aborted');
  });
});
