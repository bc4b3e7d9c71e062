import assert from 'node:assert/strict';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ChatModelList, fetchBridgeModels } from '../../extension/lm/chat-models';
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
    const fixed = new ChatModelList({
      fetchList: async () => undefined,
      fallback: () => ['claude-sonnet-4-5'],
    });
    assert.ok(mod.registerBridgeChatModels({ credentials: () => creds, models: fixed }));
    const { vendor, provider } = vs.registered.at(-1)!;
    assert.equal(vendor, 'aibridge');
    assert.deepEqual(await provider.provideLanguageModelChatInformation!({ silent: true }, token()), []);
    creds = { url: tb.url, key: dev.key };
    const [model] = (await provider.provideLanguageModelChatInformation!({ silent: true }, token())) as {
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

  it('a request whose token is cancelled already is never sent (its event will not fire)', async () => {
    const dev = await tb.addUser('lm-precancel@example.com', { team: 'ide' });
    assert.ok(mod.registerBridgeChatModels({ credentials: () => ({ url: tb.url, key: dev.key }) }));
    const { provider } = vs.registered.at(-1)!;
    const sent = mock.messageRequests().length;
    const t = token();
    t.cancel();
    const got: unknown[] = [];
    await provider.provideLanguageModelChatResponse!(
      { id: 'claude-sonnet-4-5', maxOutputTokens: 64 },
      [{ role: 1, content: [new vs.LanguageModelTextPart('never sent')] }],
      {},
      { report: (p: unknown) => got.push(p) },
      t,
    );
    assert.deepEqual(got, []);
    assert.equal(mock.messageRequests().length, sent, 'no request reached the provider');
  });

  describe('the model list comes from the bridge', () => {
    type Info = { id: string; name: string };
    async function listed(provider: Record<string, (...a: unknown[]) => unknown>): Promise<Info[]> {
      return (await provider.provideLanguageModelChatInformation!({ silent: true }, token())) as Info[];
    }

    it("offers the signed-in user's models: aliases first, the team's denied models left out; chats through an alias", async () => {
      const put = await tb.api('PUT', '/api/v1/aliases/fast', tb.adminKey, { model: 'claude-haiku-4-5' });
      assert.equal(put.status, 200);
      const policy = await tb.api('PUT', '/api/v1/teams/lm-denied/models', tb.adminKey, {
        deny: ['claude-opus-*'],
      });
      assert.equal(policy.status, 200);
      const dev = await tb.addUser('lm-list@example.com', { team: 'lm-denied' });
      assert.ok(mod.registerBridgeChatModels({ credentials: () => ({ url: tb.url, key: dev.key }) }));
      const { provider } = vs.registered.at(-1)!;
      const models = await listed(provider);
      assert.deepEqual(models[0], { ...models[0], id: 'fast', name: 'fast → claude-haiku-4-5' });
      assert.ok(models.some((m) => m.id === 'claude-sonnet-4-6'));
      assert.ok(!models.some((m) => m.id.startsWith('claude-opus-')), 'denied to the team');

      const got: unknown[] = [];
      await provider.provideLanguageModelChatResponse!(
        models[0],
        [{ role: 1, content: [new vs.LanguageModelTextPart('hi')] }],
        {},
        { report: (p: unknown) => got.push(p) },
        token(),
      );
      assert.equal(got.map((p) => (p as { value: string }).value).join(''), MOCK_TEXT);
      assert.equal(JSON.parse(mock.messageRequests().at(-1)!.body).model, 'claude-haiku-4-5');
      const [rec] = await tb.interceptions(1, dev.key);
      assert.equal(rec!.alias, 'fast');
    });

    it('asks again when told to (sign-in, a new key), and tells VS Code the list changed', async () => {
      const a = await tb.addUser('lm-a@example.com', { team: 'lm-denied' });
      const b = await tb.addUser('lm-b@example.com', { team: 'lm-open' });
      let creds = { url: tb.url, key: a.key };
      const list = new ChatModelList({ fallback: () => ['unused'] });
      assert.ok(mod.registerBridgeChatModels({ credentials: () => creds, models: list }));
      const { provider } = vs.registered.at(-1)!;
      let changes = 0;
      const sub = (
        provider.onDidChangeLanguageModelChatInformation as unknown as (l: () => void) => {
          dispose(): void;
        }
      )(() => changes++);
      const before = await listed(provider);
      assert.ok(!before.some((m) => m.id.startsWith('claude-opus-')));
      creds = { url: tb.url, key: b.key };
      list.refresh();
      assert.equal(changes, 1, 'VS Code is told to ask again');
      const after = await listed(provider);
      assert.ok(
        after.some((m) => m.id.startsWith('claude-opus-')),
        "the new key's list",
      );
      sub.dispose();
    });

    it('reads every page of the list, asking after the last id', async () => {
      const asked: string[] = [];
      const page = (data: { id: string }[], more: boolean): Response =>
        new Response(
          JSON.stringify({ data, has_more: more, first_id: data[0]!.id, last_id: data.at(-1)!.id }),
          {
            headers: { 'x-aibridge-model-list': 'caller', 'content-type': 'application/json' },
          },
        );
      const fake = (async (url: string | URL) => {
        asked.push(String(url));
        return asked.length === 1 ? page([{ id: 'a' }, { id: 'b' }], true) : page([{ id: 'c' }], false);
      }) as typeof fetch;
      const got = await fetchBridgeModels({ url: 'http://bridge', key: 'k' }, fake);
      assert.deepEqual(
        got?.map((m) => m.id),
        ['a', 'b', 'c'],
      );
      assert.match(asked[1]!, /after_id=b/);
    });

    it('gives up on a bridge that takes the request and never answers: the setting’s models meanwhile', async () => {
      const silent = ((_url: string | URL, init?: RequestInit) =>
        new Promise<Response>((_resolve, reject) => {
          init?.signal?.addEventListener('abort', () => reject(init.signal!.reason));
        })) as typeof fetch;
      const errors: unknown[] = [];
      const list = new ChatModelList({
        fetchList: (c) => fetchBridgeModels(c, silent, 50),
        fallback: () => ['claude-sonnet-4-5'],
        onError: (e) => errors.push(e),
      });
      assert.deepEqual(
        (await list.models({ url: 'http://bridge', key: 'k' })).map((m) => m.id),
        ['claude-sonnet-4-5'],
      );
      assert.equal((errors[0] as Error).name, 'TimeoutError');
    });

    it("falls back to the setting's models on a bridge without a per-caller list, or none reachable", async () => {
      // An older bridge passes the model list through to the upstream: no header says it is the caller's.
      assert.equal(await fetchBridgeModels({ url: mock.url, key: 'k' }), undefined);
      const errors: unknown[] = [];
      const older = new ChatModelList({
        fetchList: (c) => fetchBridgeModels(c),
        fallback: () => ['claude-sonnet-4-5', 'claude-haiku-4-5'],
        onError: (e) => errors.push(e),
      });
      assert.deepEqual(
        (await older.models({ url: mock.url, key: 'k' })).map((m) => m.id),
        ['claude-sonnet-4-5', 'claude-haiku-4-5'],
      );
      assert.deepEqual(errors, []);
      const gone = await older.models({ url: 'http://127.0.0.1:1', key: 'k' });
      assert.deepEqual(
        gone.map((m) => m.id),
        ['claude-sonnet-4-5', 'claude-haiku-4-5'],
      );
      assert.equal(errors.length, 1, 'the failure is reported');
      assert.deepEqual(await older.models(undefined), [], 'nothing when signed out');
    });
  });
});
