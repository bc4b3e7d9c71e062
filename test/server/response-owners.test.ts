import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import OpenAI, { APIError, BadRequestError, NotFoundError } from 'openai';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { OPENAI_UPSTREAM_KEY, OpenAIMock } from '../helpers/openai-mock';
import { askedSince, membersOnBoth, recordedRefusal, replicaPair, sdk } from '../helpers/stored-responses';

/** Exactly what OpenAI answers for a response id it does not know. */
function notFound(id: string): unknown {
  return {
    message: `Response with id '${id}' not found.`,
    type: 'invalid_request_error',
    param: null,
    code: null,
  };
}

/** The call's 404, in OpenAI's unknown-id shape; fails if it succeeded or failed otherwise. */
async function refused(id: string, call: () => Promise<unknown>): Promise<void> {
  const err = await call().then(
    () => assert.fail('the call succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof APIError, String(err));
  assert.equal(err.status, 404);
  assert.deepEqual(err.error, notFound(id));
}

/** Every way a member names a stored response: read, its input items, delete, cancel, continue. */
function everyUse(client: OpenAI, id: string): [string, () => Promise<unknown>][] {
  return [
    ['retrieve', () => client.responses.retrieve(id)],
    ['inputItems.list', () => client.responses.inputItems.list(id)],
    ['delete', () => client.responses.delete(id)],
    ['cancel', () => client.responses.cancel(id)],
    [
      'inputTokens.count (previous_response_id)',
      () =>
        client.responses.inputTokens.count({ model: 'gpt-5', input: 'and then?', previous_response_id: id }),
    ],
    [
      'create (previous_response_id)',
      () => client.responses.create({ model: 'gpt-5', input: 'and then?', previous_response_id: id }),
    ],
    [
      'create streamed (previous_response_id)',
      async () => {
        const stream = await client.responses.create({
          model: 'gpt-5',
          input: 'and then?',
          previous_response_id: id,
          stream: true,
        });
        for await (const _ of stream);
      },
    ],
  ];
}

/** A's response, created through the bridge, streamed or not; its id. */
async function created(client: OpenAI, streamed: boolean): Promise<string> {
  if (!streamed) return (await client.responses.create({ model: 'gpt-5', input: 'remember this' })).id;
  const stream = await client.responses.create({ model: 'gpt-5', input: 'remember this', stream: true });
  let id: string | undefined;
  for await (const ev of stream) if (ev.type === 'response.completed') id = ev.response.id;
  assert.ok(id, 'the stream named its response');
  return id;
}

describe('stored Responses belong to the user who created them', function () {
  this.timeout(30_000);
  let anthropic: AnthropicMock;
  let mock: OpenAIMock;
  let tb: TestBridge;
  let a: { key: string; user: { id: string } };
  let b: { key: string; user: { id: string } };

  before(async () => {
    anthropic = await new AnthropicMock().start();
    mock = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: mock.url });
    a = await tb.addUser('owner-a@example.com', { team: 'ml' });
    b = await tb.addUser('other-b@example.com', { team: 'ml' });
  });
  after(async () => {
    await tb?.close();
    await mock.stop();
    await anthropic.stop();
  });

  for (const streamed of [false, true]) {
    it(`another member cannot read, list, delete, cancel or continue A's ${streamed ? 'streamed' : 'whole'} response: 404 as for an unknown id, nothing upstream`, async () => {
      const id = await created(sdk(tb, a.key), streamed);
      const from = mock.requests.length;
      for (const [what, call] of everyUse(sdk(tb, b.key), id)) {
        await refused(id, call).catch((err: unknown) => assert.fail(`${what}: ${String(err)}`));
      }
      assert.deepEqual(askedSince(mock, from), [], 'nothing reached the provider');
      // The same bytes a raw client gets: no field tells "someone else's" from "no such id".
      const raw = await fetch(`${tb.url}/openai/v1/responses/${id}`, {
        headers: { authorization: `Bearer ${b.key}` },
      });
      assert.equal(raw.status, 404);
      assert.deepEqual(await raw.json(), { error: notFound(id) });
      assert.equal(raw.headers.get('x-aibridge-error-code'), 'response_not_found');
    });
  }

  it("the creator's own calls go through, on every route; the follow-up's response is theirs alone", async () => {
    const client = sdk(tb, a.key);
    for (const streamed of [false, true]) {
      const id = await created(client, streamed);
      const from = mock.requests.length;
      await client.responses.retrieve(id);
      await client.responses.inputItems.list(id);
      await client.responses.cancel(id);
      const counted = await client.responses.inputTokens.count({
        model: 'gpt-5',
        input: 'more',
        previous_response_id: id,
      });
      assert.equal(counted.input_tokens, 11);
      const next = await client.responses.create({
        model: 'gpt-5',
        input: 'go on',
        previous_response_id: id,
      });
      await client.responses.delete(id);
      assert.deepEqual(askedSince(mock, from), [
        `GET /v1/responses/${id}`,
        `GET /v1/responses/${id}/input_items`,
        `POST /v1/responses/${id}/cancel`,
        'POST /v1/responses/input_tokens',
        'POST /v1/responses',
        `DELETE /v1/responses/${id}`,
      ]);
      assert.equal(JSON.parse(mock.requests.at(-2)!.body).previous_response_id, id);
      // The follow-up's own response is A's too, and no one else's.
      await client.responses.retrieve(next.id);
      await refused(next.id, () => sdk(tb, b.key).responses.retrieve(next.id));
    }
  });

  it("the creator's follow-up sent as soon as response.completed arrives, before the stream closes, goes through", async () => {
    // A client acts on the completed event (the Agents SDK, a `break` out of the loop); the
    // provider's connection may close a moment later. The record is finished only then.
    mock.next({ kind: 'text', lingerMs: 600 });
    const client = sdk(tb, a.key);
    const stream = await client.responses.create({ model: 'gpt-5', input: 'remember this', stream: true });
    let next: Promise<unknown> | undefined;
    for await (const ev of stream)
      if (ev.type === 'response.completed')
        next = client.responses.create({
          model: 'gpt-5',
          input: 'go on',
          previous_response_id: ev.response.id,
        });
    assert.ok(next, 'the stream completed');
    await next;
  });

  it('previous_response_id that is no string (an array, an object, a number) is refused, never sent unchecked', async () => {
    const id = await created(sdk(tb, a.key), false);
    const from = mock.requests.length;
    for (const path of [
      '/openai/v1/responses',
      '/openai/v1/responses/compact',
      '/openai/v1/responses/input_tokens',
    ])
      for (const odd of [[id], { id }, 1]) {
        const res = await fetch(`${tb.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${b.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-5', input: 'peek', previous_response_id: odd }),
        });
        assert.equal(res.status, 400, `${path} ${JSON.stringify(odd)}`);
        assert.equal(res.headers.get('x-aibridge-error-code'), 'unsupported_parameter');
      }
    assert.deepEqual(askedSince(mock, from), []);
    // null is no continuation, as the SDKs send it.
    await sdk(tb, b.key).responses.create({ model: 'gpt-5', input: 'hi', previous_response_id: null });
    await sdk(tb, b.key).responses.inputTokens.count({
      model: 'gpt-5',
      input: 'hi',
      previous_response_id: null,
    });
    // A count that names no response goes through as before.
    await sdk(tb, b.key).responses.inputTokens.count({ model: 'gpt-5', input: 'hi' });
  });

  it('an id the bridge never saw created: refused for a member, passed through for an admin', async () => {
    const id = `resp_${randomBytes(8).toString('hex')}`;
    const from = mock.requests.length;
    for (const [what, call] of everyUse(sdk(tb, a.key), id))
      await refused(id, call).catch((err: unknown) => assert.fail(`${what}: ${String(err)}`));
    assert.deepEqual(askedSince(mock, from), []);
    await sdk(tb, tb.adminKey).responses.retrieve(id);
    assert.deepEqual(askedSince(mock, from), [`GET /v1/responses/${id}`]);
  });

  it('an admin cannot reach a response another user created either', async () => {
    const id = await created(sdk(tb, a.key), false);
    const from = mock.requests.length;
    await refused(id, () => sdk(tb, tb.adminKey).responses.retrieve(id));
    assert.deepEqual(askedSince(mock, from), []);
  });

  it('a refused continuation is recorded as a refusal, a refused passthrough logged', async () => {
    const id = await created(sdk(tb, a.key), false);
    await refused(id, () =>
      sdk(tb, b.key).responses.create({ model: 'gpt-5', input: 'peek', previous_response_id: id }),
    );
    const rec = await recordedRefusal(tb, b, 'response_not_found');
    assert.equal(rec.responseId, undefined);
    await refused(id, () => sdk(tb, b.key).responses.retrieve(id));
    const line = tb.logs.find((l) => l.includes('passthrough refused') && l.includes(id));
    assert.ok(line, 'the refused passthrough is logged');
    const logged = JSON.parse(line) as { userId: string; standing: string; statusCode: number };
    assert.deepEqual([logged.userId, logged.standing, logged.statusCode], [b.user.id, 'foreign', 404]);
  });

  it("the record keeps the response's id, streamed or not, and /responses/compact's", async () => {
    const client = sdk(tb, a.key);
    const ids = [await created(client, false), await created(client, true)];
    const compacted = await client.responses.compact({ model: 'gpt-5', input: 'a long story' });
    const recs = await tb.interceptions(1, a.key);
    for (const id of [...ids, compacted.id])
      assert.ok(
        recs.some((r) => r.responseId === id && r.userId === a.user.id),
        `a record of A's holds ${id}`,
      );
  });

  it('after a restart the owner is found in the store (embedded)', async () => {
    const id = await created(sdk(tb, a.key), true);
    // Durable before the restart: the records are listed once stored.
    await tb.interceptions(1, a.key).then((recs) => assert.ok(recs.some((r) => r.responseId === id)));
    const dataDir = tb.dataDir;
    await tb.close();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: mock.url }, dataDir);
    const from = mock.requests.length;
    await refused(id, () => sdk(tb, b.key).responses.retrieve(id));
    assert.deepEqual(askedSince(mock, from), []);
    await sdk(tb, a.key).responses.retrieve(id);
    await sdk(tb, a.key).responses.create({ model: 'gpt-5', input: 'again', previous_response_id: id });
    assert.deepEqual(askedSince(mock, from), [`GET /v1/responses/${id}`, 'POST /v1/responses']);
  });
});

/** Exactly what OpenAI answers for a conversation id it does not know. */
function conversationNotFound(id: string): unknown {
  return {
    message: `Conversation with id '${id}' not found.`,
    type: 'invalid_request_error',
    param: null,
    code: null,
  };
}

/** A conversation id as the Conversations API makes them; none of them was made through the bridge. */
function conversationId(): string {
  return `conv_${randomBytes(8).toString('hex')}`;
}

/** `POST {base}{path}` with `body` as JSON, raw (the SDK types would not let a malformed value through). */
function postJson(tb: TestBridge, key: string, at: string, body: unknown): Promise<Response> {
  return fetch(`${tb.url}${at}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('stored conversations (Conversations API) go upstream only for admins', function () {
  this.timeout(30_000);
  let anthropic: AnthropicMock;
  let mock: OpenAIMock;
  let tb: TestBridge;
  let member: { key: string; user: { id: string } };
  /** OpenAI's routes, and an openai-compatible instance's (which forwards no stored-response route). */
  const BASES = ['/openai/v1', '/compat/v1'];

  const client = (key: string, base = '/openai/v1', headers?: Record<string, string>): OpenAI =>
    new OpenAI({ apiKey: key, baseURL: `${tb.url}${base}`, maxRetries: 0, defaultHeaders: headers });

  /** Every way a request names a conversation on `base`: create, streamed, and the free token count. */
  function everyUse(c: OpenAI, base: string, conversation: string | { id: string }) {
    const uses: [string, () => Promise<unknown>][] = [
      ['create', () => c.responses.create({ model: 'gpt-5', input: 'and then?', conversation })],
      [
        'create streamed',
        async () => {
          const stream = await c.responses.create({
            model: 'gpt-5',
            input: 'and then?',
            conversation,
            stream: true,
          });
          for await (const _ of stream);
        },
      ],
    ];
    // The token count is forwarded on OpenAI's own instances only.
    if (base === '/openai/v1')
      uses.push([
        'inputTokens.count',
        () => c.responses.inputTokens.count({ model: 'gpt-5', input: 'and then?', conversation }),
      ]);
    return uses;
  }

  before(async () => {
    anthropic = await new AnthropicMock().start();
    mock = await new OpenAIMock().start();
    const providersFile = path.join(await tempDir('aibridge-conv-conf-'), 'providers.json');
    await fs.writeFile(
      providersFile,
      JSON.stringify({
        providers: {
          compat: {
            type: 'openai-compatible',
            baseUrl: mock.url,
            apiKey: OPENAI_UPSTREAM_KEY,
            prices: 'free',
          },
        },
        byok: { teams: ['own-keys'] },
      }),
    );
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: mock.url,
      AIBRIDGE_PROVIDERS_FILE: providersFile,
    });
    member = await tb.addUser('conv-member@example.com', { team: 'ml' });
  });
  after(async () => {
    await tb?.close();
    await mock.stop();
    await anthropic.stop();
  });

  it("a member's request naming a conversation, as its id or {id}, gets OpenAI's 404 for an unknown id: nothing upstream", async () => {
    const from = mock.requests.length;
    for (const base of BASES)
      for (const form of ['id', 'object'] as const) {
        const id = conversationId();
        const conversation = form === 'id' ? id : { id };
        for (const [what, call] of everyUse(client(member.key, base), base, conversation)) {
          const err = await call().then(
            () => assert.fail(`${base} ${what} (${form}) succeeded`),
            (e: unknown) => e,
          );
          assert.ok(err instanceof NotFoundError, `${base} ${what} (${form}): ${String(err)}`);
          assert.deepEqual(err.error, conversationNotFound(id), `${base} ${what} (${form})`);
        }
      }
    assert.deepEqual(askedSince(mock, from), [], 'nothing reached the provider');
    // The same bytes a raw client gets, on /responses/compact too, with the bridge's code in the header.
    for (const at of [
      '/openai/v1/responses',
      '/openai/v1/responses/compact',
      '/openai/v1/responses/input_tokens',
    ]) {
      const id = conversationId();
      const res = await postJson(tb, member.key, at, { model: 'gpt-5', input: 'peek', conversation: id });
      assert.equal(res.status, 404, at);
      assert.deepEqual(await res.json(), { error: conversationNotFound(id) }, at);
      assert.equal(res.headers.get('x-aibridge-error-code'), 'conversation_not_found', at);
    }
    assert.deepEqual(askedSince(mock, from), []);
  });

  it("an admin's request naming a conversation goes through to the provider, as it came", async () => {
    const admin = client(tb.adminKey);
    const id = conversationId();
    const from = mock.requests.length;
    await admin.responses.create({ model: 'gpt-5', input: 'go on', conversation: id });
    const stream = await admin.responses.create({
      model: 'gpt-5',
      input: 'go on',
      conversation: { id },
      stream: true,
    });
    for await (const _ of stream);
    const counted = await admin.responses.inputTokens.count({
      model: 'gpt-5',
      input: 'more',
      conversation: id,
    });
    assert.equal(counted.input_tokens, 11);
    await client(tb.adminKey, '/compat/v1').responses.create({
      model: 'gpt-5',
      input: 'go on',
      conversation: id,
    });
    assert.deepEqual(askedSince(mock, from), [
      'POST /v1/responses',
      'POST /v1/responses',
      'POST /v1/responses/input_tokens',
      'POST /v1/responses',
    ]);
    assert.deepEqual(
      mock.requests.slice(from).map((r) => (JSON.parse(r.body) as { conversation: unknown }).conversation),
      [id, { id }, id, id],
    );
  });

  it("a conversation's request is not compared for cache breaks: its body holds only the new turn", async () => {
    const admin = client(tb.adminKey);
    const cacheKeyOf = async (conversation?: string): Promise<unknown> => {
      const { response } = await admin.responses
        .create({ model: 'gpt-5', input: 'the same turn', ...(conversation ? { conversation } : {}) })
        .withResponse();
      const id = response.headers.get('x-aibridge-interception-id');
      const rec = await eventually(async () => {
        const r = await tb.api<{ cacheKey?: unknown }>('GET', `/api/v1/interceptions/${id}`, tb.adminKey);
        return r.status === 200 ? r.body : undefined;
      });
      return rec.cacheKey;
    };
    assert.notEqual(await cacheKeyOf(), undefined, 'a whole conversation in the body is fingerprinted');
    assert.equal(await cacheKeyOf(conversationId()), undefined);
  });

  it('a conversation that names no id (a number, an array, an object without a string id) is 400 unsupported_parameter, for an admin too, never sent', async () => {
    const from = mock.requests.length;
    for (const key of [member.key, tb.adminKey])
      for (const at of [
        '/openai/v1/responses',
        '/openai/v1/responses/compact',
        '/openai/v1/responses/input_tokens',
        '/compat/v1/responses',
      ])
        for (const odd of [1, ['conv_x'], { id: 1 }, {}, true]) {
          const res = await postJson(tb, key, at, { model: 'gpt-5', input: 'peek', conversation: odd });
          assert.equal(res.status, 400, `${at} ${JSON.stringify(odd)}`);
          assert.equal(res.headers.get('x-aibridge-error-code'), 'unsupported_parameter');
          const body = (await res.json()) as { error: { message: string } };
          assert.match(body.error.message, /`conversation` must be a conversation id/);
        }
    assert.deepEqual(askedSince(mock, from), []);
    // Through the SDK too, which sends what it is given.
    await assert.rejects(
      client(member.key).responses.create({
        model: 'gpt-5',
        input: 'peek',
        conversation: 7 as unknown as string,
      }),
      (err: unknown) => err instanceof BadRequestError && err.status === 400,
    );
    // null is no conversation, as the SDKs send it.
    await client(member.key).responses.create({ model: 'gpt-5', input: 'hi', conversation: null });
    await client(member.key).responses.inputTokens.count({ model: 'gpt-5', input: 'hi', conversation: null });
    assert.deepEqual(askedSince(mock, from), ['POST /v1/responses', 'POST /v1/responses/input_tokens']);
  });

  it('the refusal is recorded like any refused request, decided before the model policy; a refused count is logged', async () => {
    const frugal = await tb.addUser('conv-frugal@example.com', { team: 'conv-frugal' });
    const put = await tb.api('PUT', '/api/v1/teams/conv-frugal/models', tb.adminKey, { allow: ['gpt-5'] });
    assert.equal(put.status, 200);
    const id = conversationId();
    // gpt-4o is denied to the team: a conversation checked after governance would be 403 model_denied.
    await assert.rejects(
      client(frugal.key).responses.create({ model: 'gpt-4o', input: 'peek', conversation: id }),
      (err: unknown) =>
        err instanceof NotFoundError && err.headers.get('x-aibridge-error-code') === 'conversation_not_found',
    );
    const rec = await recordedRefusal(tb, frugal, 'conversation_not_found');
    assert.equal(rec.error?.message, `Conversation with id '${id}' not found.`);

    await assert.rejects(
      client(frugal.key).responses.inputTokens.count({ model: 'gpt-5', input: 'peek', conversation: { id } }),
      NotFoundError,
    );
    const line = tb.logs.find((l) => l.includes('passthrough refused') && l.includes(frugal.user.id));
    assert.ok(line, 'the refused count is logged');
    const logged = JSON.parse(line) as { code: string; path: string; statusCode: number };
    assert.deepEqual(
      [logged.code, logged.path, logged.statusCode],
      ['conversation_not_found', '/responses/input_tokens', 404],
    );
  });

  it("with their own provider key (X-AIBridge-Key) a member's conversation goes to the provider, which keeps it to that key", async () => {
    const own = await tb.addUser('conv-own@example.com', { team: 'own-keys' });
    const c = client(OPENAI_UPSTREAM_KEY, '/openai/v1', { 'X-AIBridge-Key': own.key });
    const id = conversationId();
    const from = mock.requests.length;
    await c.responses.create({ model: 'gpt-5', input: 'go on', conversation: id });
    await c.responses.inputTokens.count({ model: 'gpt-5', input: 'more', conversation: { id } });
    assert.deepEqual(askedSince(mock, from), ['POST /v1/responses', 'POST /v1/responses/input_tokens']);
  });

  it('with their own key on an openai-compatible instance (a server that may take any key) the check still applies', async () => {
    const own = await tb.addUser('conv-own-compat@example.com', { team: 'own-keys' });
    const c = client('any-token-a-keyless-server-takes', '/compat/v1', { 'X-AIBridge-Key': own.key });
    const from = mock.requests.length;
    const id = conversationId();
    const err = await c.responses.create({ model: 'gpt-5', input: 'go on', conversation: id }).then(
      () => assert.fail('the conversation went upstream'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof NotFoundError, String(err));
    assert.deepEqual(err.error, conversationNotFound(id));
    // Another member's stored response, continued with an own key, is refused alike.
    const theirs = (await client(member.key).responses.create({ model: 'gpt-5', input: 'mine' })).id;
    const after = mock.requests.length;
    const cont = await c.responses
      .create({ model: 'gpt-5', input: 'and then?', previous_response_id: theirs })
      .then(
        () => assert.fail("another member's response was continued"),
        (e: unknown) => e,
      );
    assert.ok(cont instanceof NotFoundError, String(cont));
    assert.deepEqual(askedSince(mock, after), []);
    assert.deepEqual(askedSince(mock, from), ['POST /v1/responses'], "only the other member's own create");
  });

  it('the Conversations API itself is not served: nothing creates or reads a conversation through the bridge', async () => {
    const from = mock.requests.length;
    for (const [method, at] of [
      ['POST', '/openai/v1/conversations'],
      ['GET', `/openai/v1/conversations/${conversationId()}`],
    ] as const) {
      const res = await fetch(`${tb.url}${at}`, {
        method,
        headers: { authorization: `Bearer ${tb.adminKey}`, 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      assert.equal(res.status, 404, `${method} ${at}`);
      assert.equal(res.headers.get('x-aibridge-error-code'), 'not_found');
    }
    assert.deepEqual(askedSince(mock, from), []);
  });
});

describe('stored Responses on two replicas sharing one PostgreSQL store', function () {
  this.timeout(90_000);
  const r = replicaPair('response_owners');

  it('a response created on one replica is found on the other at once, and after a restart', async () => {
    const a = await r.one.addUser('pg-owner@example.com');
    const b = await r.one.addUser('pg-other@example.com');
    for (const streamed of [true, false]) {
      const id = await created(sdk(r.one, a.key), streamed);
      // Right after the answer ended (AIBRIDGE_AUDIT_ACK=stored, PostgreSQL's default), no waiting.
      const from = r.mock.requests.length;
      await sdk(r.two, a.key).responses.create({ model: 'gpt-5', input: 'go on', previous_response_id: id });
      await sdk(r.two, a.key).responses.retrieve(id);
      for (const [what, call] of everyUse(sdk(r.two, b.key), id))
        await refused(id, call).catch((err: unknown) => assert.fail(`${what}: ${String(err)}`));
      assert.deepEqual(askedSince(r.mock, from), ['POST /v1/responses', `GET /v1/responses/${id}`]);

      const dataDir = r.two.dataDir;
      await r.two.close();
      r.two = await startBridge(r.anthropic.url, r.env, dataDir);
      const after = r.mock.requests.length;
      await refused(id, () => sdk(r.two, b.key).responses.retrieve(id));
      await sdk(r.two, a.key).responses.retrieve(id);
      assert.deepEqual(askedSince(r.mock, after), [`GET /v1/responses/${id}`]);
    }
  });
});

describe('stored Responses on two replicas acking `sent`: owners are told, not only stored', function () {
  this.timeout(90_000);
  const r = replicaPair('response_owners_sent', { AIBRIDGE_AUDIT_ACK: 'sent' });

  it('a follow-up sent to the other replica on response.completed, before the stream has ended or been recorded, goes through; another member is refused there', async () => {
    const { a, b } = await membersOnBoth(r, ['told-owner@example.com', 'told-other@example.com']);
    // A quarter of a second of output, as a real stream takes (its response.created comes first),
    // and the provider's connection stays open after response.completed: the interception, and so
    // its record, ends only when it closes.
    r.mock.next({ kind: 'drip', count: 5, delayMs: 50, lingerMs: 1500 });
    const stream = await sdk(r.one, a.key).responses.create({
      model: 'gpt-5',
      input: 'remember this',
      stream: true,
    });
    let id: string | undefined;
    let followUp: Promise<unknown> | undefined;
    let foreign: Promise<void> | undefined;
    for await (const ev of stream)
      if (ev.type === 'response.completed') {
        id = ev.response.id;
        const named = id;
        followUp = sdk(r.two, a.key).responses.create({
          model: 'gpt-5',
          input: 'go on',
          previous_response_id: named,
        });
        foreign = refused(named, () => sdk(r.two, b.key).responses.retrieve(named));
        // Settled while the first stream is still open.
        await Promise.all([followUp, foreign]);
      }
    assert.ok(id && followUp && foreign, 'the stream completed');
  });
});
