import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type OpenAI from 'openai';
import { APIError } from 'openai';
import type { ResponseInputItem } from 'openai/resources/responses/responses';
import { startBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import {
  askedSince,
  membersOnBoth,
  recordedRefusal,
  replicaPair,
  restarted,
  sdk,
  twoMembers,
} from '../helpers/stored-responses';

/** Exactly what OpenAI answers for an input item naming a stored item it does not know. */
function itemNotFound(id: string): unknown {
  return {
    message: `Item with id '${id}' not found.`,
    type: 'invalid_request_error',
    param: 'input',
    code: null,
  };
}

/** The ids of a stored answer's output items, created through the bridge, streamed or not. */
async function storedItems(client: OpenAI, streamed: boolean, store = true): Promise<string[]> {
  if (!streamed) {
    const r = await client.responses.create({ model: 'gpt-5', input: 'remember this', store });
    return r.output.map((o) => o.id!);
  }
  const stream = await client.responses.create({
    model: 'gpt-5',
    input: 'remember this',
    stream: true,
    store,
  });
  let ids: string[] | undefined;
  for await (const ev of stream)
    if (ev.type === 'response.completed') ids = ev.response.output.map((o) => o.id!);
  assert.ok(ids?.length, 'the stream completed with output items');
  return ids;
}

/** Every way an input names a stored item by id alone. */
function referencing(id: string): [string, ResponseInputItem[]][] {
  return [
    [
      'item_reference',
      [
        { type: 'item_reference', id },
        { role: 'user', content: 'go on' },
      ],
    ],
    // The SDK's ItemReference has an optional type: the id alone is a reference.
    ['{id} alone', [{ id } as ResponseInputItem, { role: 'user', content: 'go on' }]],
    [
      'a reasoning item without encrypted_content',
      [
        { type: 'reasoning', id, summary: [] },
        { role: 'user', content: 'go on' },
      ],
    ],
    // Null and empty read as absent.
    [
      '{id, role: null}',
      [{ id, role: null } as unknown as ResponseInputItem, { role: 'user', content: 'go on' }],
    ],
    [
      "{id, type: ''}",
      [{ id, type: '' } as unknown as ResponseInputItem, { role: 'user', content: 'go on' }],
    ],
    [
      "{id, role: ''}",
      [{ id, role: '' } as unknown as ResponseInputItem, { role: 'user', content: 'go on' }],
    ],
    [
      "{id, type: null, role: ''}",
      [{ id, type: null, role: '' } as unknown as ResponseInputItem, { role: 'user', content: 'go on' }],
    ],
    [
      "a reasoning item with encrypted_content ''",
      [
        { type: 'reasoning', id, summary: [], encrypted_content: '' },
        { role: 'user', content: 'go on' },
      ],
    ],
  ];
}

/** Every request that takes input: create, streamed create, /responses/compact, the token count. */
function everyCall(client: OpenAI, input: ResponseInputItem[]): [string, () => Promise<unknown>][] {
  return [
    ['create', () => client.responses.create({ model: 'gpt-5', input })],
    [
      'create streamed',
      async () => {
        for await (const _ of await client.responses.create({ model: 'gpt-5', input, stream: true }));
      },
    ],
    ['compact', () => client.responses.compact({ model: 'gpt-5', input })],
    ['inputTokens.count', () => client.responses.inputTokens.count({ model: 'gpt-5', input })],
  ];
}

async function refused(id: string, what: string, call: () => Promise<unknown>): Promise<void> {
  const err = await call().then(
    () => assert.fail(`${what}: the call succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof APIError, `${what}: ${String(err)}`);
  assert.equal(err.status, 404, what);
  assert.deepEqual(err.error, itemNotFound(id), what);
  assert.equal(err.headers.get('x-aibridge-error-code'), 'item_not_found', what);
}

describe('stored output items belong to the user whose answer they are', function () {
  this.timeout(60_000);
  const s = twoMembers(['items-a@example.com', 'items-b@example.com']);

  for (const streamed of [false, true]) {
    it(`another member naming an item of A's ${streamed ? 'streamed' : 'whole'} answer gets OpenAI's 404 for an unknown item, on every route, in every form; nothing upstream`, async () => {
      const [item] = await storedItems(sdk(s.tb, s.a.key), streamed);
      const from = s.mock.requests.length;
      for (const [form, input] of referencing(item!))
        for (const [what, call] of everyCall(sdk(s.tb, s.b.key), input))
          await refused(item!, `${form}, ${what}`, call);
      assert.deepEqual(askedSince(s.mock, from), [], 'nothing reached the provider');
      // An admin cannot reach another user's item either.
      await refused(item!, 'admin', () =>
        sdk(s.tb, s.tb.adminKey).responses.create({ model: 'gpt-5', input: referencing(item!)[0]![1] }),
      );
    });
  }

  it("A's own references go through on every route, as they came", async () => {
    const [whole] = await storedItems(sdk(s.tb, s.a.key), false);
    const [streamed] = await storedItems(sdk(s.tb, s.a.key), true);
    for (const item of [whole!, streamed!])
      for (const [form, input] of referencing(item)) {
        const from = s.mock.requests.length;
        for (const [what, call] of everyCall(sdk(s.tb, s.a.key), input))
          await call().catch((err: unknown) => assert.fail(`${form}, ${what}: ${String(err)}`));
        const sent = s.mock.requests.slice(from);
        assert.deepEqual(
          sent.map((r) => r.url),
          ['/v1/responses', '/v1/responses', '/v1/responses/compact', '/v1/responses/input_tokens'],
        );
        for (const r of sent) assert.deepEqual((JSON.parse(r.body) as { input: unknown }).input, input, form);
      }
  });

  it("the creator's reference sent as soon as response.completed arrives, before the stream closes, goes through; another's is refused", async () => {
    // The provider's connection stays open after response.completed: the interception, and so
    // its record, ends only when it closes.
    s.mock.next({ kind: 'drip', count: 3, delayMs: 20, lingerMs: 1500 });
    const stream = await sdk(s.tb, s.a.key).responses.create({
      model: 'gpt-5',
      input: 'remember this',
      stream: true,
    });
    let settled: Promise<unknown> | undefined;
    for await (const ev of stream)
      if (ev.type === 'response.completed') {
        const [item] = ev.response.output.map((o) => o.id!);
        const input = referencing(item!)[0]![1];
        settled = Promise.all([
          sdk(s.tb, s.a.key).responses.create({ model: 'gpt-5', input }),
          refused(item!, 'other member', () =>
            sdk(s.tb, s.b.key).responses.create({ model: 'gpt-5', input }),
          ),
        ]);
        // Settled while the first stream is still open.
        await settled;
      }
    assert.ok(settled, 'the stream completed');
  });

  it('a continuation refused at once beside an item being looked up answers 404, and leaves no lookup unheard', async () => {
    const rejections: unknown[] = [];
    const heard = (reason: unknown): void => {
      rejections.push(reason);
    };
    process.on('unhandledRejection', heard);
    try {
      for (const previous of ['', 'x'.repeat(300)]) {
        const res = await fetch(`${s.tb.url}/openai/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.b.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-5',
            previous_response_id: previous,
            input: [{ type: 'item_reference', id: `msg_${randomBytes(8).toString('hex')}` }],
          }),
        });
        assert.equal(res.status, 404);
        assert.equal(res.headers.get('x-aibridge-error-code'), 'response_not_found');
      }
      // Long enough for a lookup left running to settle.
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(rejections, []);
      await sdk(s.tb, s.b.key).responses.create({ model: 'gpt-5', input: 'still here' });
    } finally {
      process.off('unhandledRejection', heard);
    }
  });

  it('an item the bridge never saw stored: refused for a member, passed through for an admin', async () => {
    const id = `msg_${randomBytes(16).toString('hex')}`;
    const input = referencing(id)[0]![1];
    const from = s.mock.requests.length;
    await refused(id, 'member', () => sdk(s.tb, s.b.key).responses.create({ model: 'gpt-5', input }));
    assert.deepEqual(askedSince(s.mock, from), []);
    await sdk(s.tb, s.tb.adminKey).responses.create({ model: 'gpt-5', input });
    assert.deepEqual(askedSince(s.mock, from), ['POST /v1/responses']);
  });

  it('items of an answer sent with store: false are not recorded: the provider keeps none of them to name', async () => {
    const [item] = await storedItems(sdk(s.tb, s.a.key), false, false);
    const [streamedItem] = await storedItems(sdk(s.tb, s.a.key), true, false);
    const recs = await s.tb.interceptions(1, s.a.key);
    for (const id of [item!, streamedItem!]) {
      assert.ok(!recs.some((r) => r.responseItems?.includes(id)), `no record holds ${id}`);
      await refused(id, 'own unstored item', () =>
        sdk(s.tb, s.a.key).responses.create({ model: 'gpt-5', input: referencing(id)[0]![1] }),
      );
    }
  });

  it('items that carry their own content (a message, reasoning with encrypted_content, a function call) pass with any id', async () => {
    const [item] = await storedItems(sdk(s.tb, s.a.key), false);
    const input: ResponseInputItem[] = [
      {
        type: 'message',
        id: item!,
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text: 'hi', annotations: [] }],
      },
      { type: 'reasoning', id: item!, summary: [], encrypted_content: 'gAAAA-opaque' },
      { type: 'function_call', id: item!, call_id: 'call_1', name: 'ls', arguments: '{}' },
      { type: 'function_call_output', call_id: 'call_1', output: 'a b c' },
    ];
    const from = s.mock.requests.length;
    await sdk(s.tb, s.b.key).responses.create({ model: 'gpt-5', input });
    assert.deepEqual(askedSince(s.mock, from), ['POST /v1/responses']);
  });

  it('a reference whose id is no string, or more than 2,048 of them, is 400 unsupported_parameter, for an admin too, never sent', async () => {
    const from = s.mock.requests.length;
    const bodies: unknown[] = [
      { model: 'gpt-5', input: [{ type: 'item_reference', id: 7 }] },
      { model: 'gpt-5', input: [{ type: 'reasoning', id: ['msg_1'], summary: [] }] },
      { model: 'gpt-5', input: [{ id: { id: 'msg_1' } }] },
      {
        model: 'gpt-5',
        input: Array.from({ length: 2049 }, (_, i) => ({ type: 'item_reference', id: `msg_${i}` })),
      },
    ];
    for (const key of [s.b.key, s.tb.adminKey])
      for (const [i, body] of bodies.entries())
        for (const at of ['/openai/v1/responses', '/openai/v1/responses/input_tokens']) {
          const res = await fetch(`${s.tb.url}${at}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          assert.equal(res.status, 400, `body ${i} at ${at}`);
          assert.equal(
            res.headers.get('x-aibridge-error-code'),
            'unsupported_parameter',
            `body ${i} at ${at}`,
          );
        }
    assert.deepEqual(askedSince(s.mock, from), []);
  });

  it("the record keeps the answer's stored items; a refusal is recorded before the model policy, a refused count logged", async () => {
    const items = await storedItems(sdk(s.tb, s.a.key), true);
    const recs = await s.tb.interceptions(1, s.a.key);
    assert.ok(
      recs.some((r) => r.userId === s.a.user.id && r.responseItems?.join() === items.join()),
      "a record of A's holds the answer's items",
    );
    const frugal = await s.tb.addUser('items-frugal@example.com', { team: 'items-frugal' });
    const put = await s.tb.api('PUT', '/api/v1/teams/items-frugal/models', s.tb.adminKey, {
      allow: ['gpt-5'],
    });
    assert.equal(put.status, 200);
    // gpt-4o is denied to the team: a reference checked after governance would be 403 model_denied.
    await refused(items[0]!, 'denied model', () =>
      sdk(s.tb, frugal.key).responses.create({ model: 'gpt-4o', input: referencing(items[0]!)[0]![1] }),
    );
    const rec = await recordedRefusal(s.tb, frugal, 'item_not_found');
    assert.equal(rec.error?.message, `Item with id '${items[0]}' not found.`);
    await refused(items[0]!, 'count', () =>
      sdk(s.tb, frugal.key).responses.inputTokens.count({
        model: 'gpt-5',
        input: referencing(items[0]!)[0]![1],
      }),
    );
    const line = s.tb.logs.find(
      (l) => l.includes('passthrough refused') && l.includes(frugal.user.id) && l.includes('item_not_found'),
    );
    assert.ok(line, 'the refused count is logged');
  });

  it('after a restart the owner of an item is found in the store (embedded)', async () => {
    const items = await storedItems(sdk(s.tb, s.a.key), true);
    await s.tb
      .interceptions(1, s.a.key)
      .then((recs) => assert.ok(recs.some((r) => r.responseItems?.includes(items[0]!))));
    await restarted(s);
    const from = s.mock.requests.length;
    await refused(items[0]!, 'after restart', () =>
      sdk(s.tb, s.b.key).responses.create({ model: 'gpt-5', input: referencing(items[0]!)[0]![1] }),
    );
    assert.deepEqual(askedSince(s.mock, from), []);
    await sdk(s.tb, s.a.key).responses.create({ model: 'gpt-5', input: referencing(items[0]!)[0]![1] });
    assert.deepEqual(askedSince(s.mock, from), ['POST /v1/responses']);
  });
});

describe('stored output items on two replicas sharing one PostgreSQL store', function () {
  this.timeout(90_000);
  // The other replica learns an item from the notification or, failing that, the stored record:
  // acking `sent` leaves only the notification in the first moments.
  const r = replicaPair('response_items', { AIBRIDGE_AUDIT_ACK: 'sent' });

  it("a whole answer's follow-up sent to the other replica the moment it arrives goes through: a member's unknown id gets a second look", async () => {
    const { a, b } = await membersOnBoth(r, ['pg-items-now-a@example.com', 'pg-items-now-b@example.com']);
    for (let i = 0; i < 5; i++) {
      const answer = await sdk(r.one, a.key).responses.create({ model: 'gpt-5', input: `turn ${i}` });
      const item = answer.output[0]!.id!;
      // No wait: the notification has not come yet, the record may not be stored (acking `sent`).
      await Promise.all([
        sdk(r.two, a.key).responses.create({
          model: 'gpt-5',
          input: 'go on',
          previous_response_id: answer.id,
        }),
        sdk(r.two, a.key).responses.create({ model: 'gpt-5', input: referencing(item)[0]![1] }),
        refused(item, 'other member', () =>
          sdk(r.two, b.key).responses.create({ model: 'gpt-5', input: referencing(item)[0]![1] }),
        ),
      ]);
    }
  });

  it("an item stored through one replica is its owner's on the other, told as the stream completes it and found in the store after a restart", async () => {
    const { a, b } = await membersOnBoth(r, ['pg-items-a@example.com', 'pg-items-b@example.com']);
    // The provider's connection stays open 2 s after response.completed: until it closes the
    // interception has not ended and nothing is stored, so only the notification can tell the other.
    r.mock.next({ kind: 'drip', count: 3, delayMs: 20, lingerMs: 2000 });
    const stream = await sdk(r.one, a.key).responses.create({
      model: 'gpt-5',
      input: 'remember',
      stream: true,
    });
    const items: string[] = [];
    for await (const ev of stream)
      if (ev.type === 'response.completed') {
        items.push(...ev.response.output.map((o) => o.id!));
        const input = referencing(items.at(-1)!)[0]![1];
        // The notification's trip (it waits up to 20 ms to share a NOTIFY): retried for a second.
        const began = Date.now();
        let told = false;
        while (!told && Date.now() - began < 1000)
          told = await sdk(r.two, a.key)
            .responses.create({ model: 'gpt-5', input })
            .then(
              () => true,
              () => new Promise<boolean>((done) => setTimeout(() => done(false), 20)),
            );
        assert.ok(told, "A's reference went through on the other replica while the stream was open");
        await refused(items.at(-1)!, 'other member', () =>
          sdk(r.two, b.key).responses.create({ model: 'gpt-5', input }),
        );
      }
    assert.ok(items.length > 0, 'the stream completed');

    // Stored, then a fresh replica that heard nothing finds it in the database.
    await eventually(
      async () => (await r.one.interceptions(1, a.key)).some((rec) => rec.responseItems?.includes(items[0]!)),
      { what: "the stream's record" },
    );
    const dataDir = r.two.dataDir;
    await r.two.close();
    r.two = await startBridge(r.anthropic.url, r.env, dataDir);
    const after = r.mock.requests.length;
    await refused(items[0]!, 'after restart', () =>
      sdk(r.two, b.key).responses.create({ model: 'gpt-5', input: referencing(items[0]!)[0]![1] }),
    );
    assert.deepEqual(askedSince(r.mock, after), []);
    await sdk(r.two, a.key).responses.create({ model: 'gpt-5', input: referencing(items[0]!)[0]![1] });
    assert.deepEqual(askedSince(r.mock, after), ['POST /v1/responses']);
  });
});
