import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import { AnthropicMock } from './anthropic-mock';
import { startBridge, type TestBridge } from './bridge';
import { OpenAIMock } from './openai-mock';
import { testPostgres } from './postgres';

/** The suites on stored Responses state (responses, conversations, items): shared setup. */

export function sdk(tb: TestBridge, key: string): OpenAI {
  return new OpenAI({ apiKey: key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
}

/** Upstream paths the mock was asked since `from`. */
export function askedSince(mock: OpenAIMock, from: number): string[] {
  return mock.requests.slice(from).map((r) => `${r.method} ${r.url}`);
}

type Member = { key: string; user: { id: string } };

/** One bridge on the embedded store before the OpenAI mock, with members A and B of one team; started and stopped by the suite's hooks. */
export function twoMembers(emails: [string, string]) {
  const s = {} as { anthropic: AnthropicMock; mock: OpenAIMock; tb: TestBridge; a: Member; b: Member };
  before(async () => {
    s.anthropic = await new AnthropicMock().start();
    s.mock = await new OpenAIMock().start();
    s.tb = await startBridge(s.anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: s.mock.url });
    s.a = await s.tb.addUser(emails[0], { team: 'ml' });
    s.b = await s.tb.addUser(emails[1], { team: 'ml' });
  });
  after(async () => {
    await s.tb?.close();
    await s.mock?.stop();
    await s.anthropic?.stop();
  });
  return s;
}

/** The same bridge started again on its data directory (a restart): the suite's `tb` is replaced. */
export async function restarted(s: {
  anthropic: AnthropicMock;
  mock: OpenAIMock;
  tb: TestBridge;
}): Promise<void> {
  const dataDir = s.tb.dataDir;
  await s.tb.close();
  s.tb = await startBridge(s.anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: s.mock.url }, dataDir);
}

/** Two replicas on one fresh PostgreSQL database, before the OpenAI mock; started and stopped by the suite's hooks. */
export function replicaPair(database: string, extra: Record<string, string> = {}) {
  const pair = {} as {
    anthropic: AnthropicMock;
    mock: OpenAIMock;
    env: Record<string, string>;
    one: TestBridge;
    two: TestBridge;
  };
  before(async () => {
    pair.anthropic = await new AnthropicMock().start();
    pair.mock = await new OpenAIMock().start();
    pair.env = {
      AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase(database),
      AIBRIDGE_KEY_HASH_SECRET: randomBytes(32).toString('base64url'),
      AIBRIDGE_OPENAI_BASE_URL: pair.mock.url,
      ...extra,
    };
    pair.one = await startBridge(pair.anthropic.url, pair.env);
    pair.two = await startBridge(pair.anthropic.url, pair.env, pair.one.dataDir);
  });
  after(async () => {
    await pair.one?.close();
    await pair.two?.close();
    await pair.mock?.stop();
    await pair.anthropic?.stop();
  });
  return pair;
}

/**
 * Members A and B added through the pair's first replica, each key already used on both replicas,
 * so what a test times is not a replica learning a key.
 */
export async function membersOnBoth(
  pair: { one: TestBridge; two: TestBridge },
  emails: [string, string],
): Promise<{ a: Member; b: Member }> {
  const a = await pair.one.addUser(emails[0]);
  const b = await pair.one.addUser(emails[1]);
  for (const tb of [pair.one, pair.two]) for (const k of [a.key, b.key]) await sdk(tb, k).models.list();
  return { a, b };
}

/**
 * The member's record of a request the bridge refused with `code` before the provider saw it, as
 * every such refusal is recorded: theirs, 404, capture `none`, no prompt.
 */
export async function recordedRefusal(tb: TestBridge, member: Member, code: string): Promise<Interception> {
  const rec = (await tb.interceptions(1, member.key)).find((r) => r.error?.type === code);
  assert.ok(rec, 'the refusal is recorded');
  assert.equal(rec.userId, member.user.id);
  assert.equal(rec.httpStatus, 404);
  assert.equal(rec.capture, 'none');
  assert.equal(rec.prompt, null);
  return rec;
}
