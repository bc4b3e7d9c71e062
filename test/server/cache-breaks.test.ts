import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import { AnthropicMock, type MockUsage } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { TestClock } from '../helpers/clock';
import { type LiveTestClient, liveClient } from '../helpers/live-client';
import { OpenAIMock } from '../helpers/openai-mock';
import { testPostgres } from '../helpers/postgres';

/** USD per million tokens, as the bundled genai-prices data has them (below Sonnet's 200k tier). */
const SONNET_46 = { cacheRead: 0.3, cacheWrite: 3.75 };
const OPUS_41 = { cacheRead: 1.5, cacheWrite: 18.75 };
const GPT_5 = { input: 1.25, cacheRead: 0.125 };
const usd = (n: number): number => Math.round(n * 1e6) / 1e6;

const TOOLS: Anthropic.Tool[] = [
  { name: 'Bash', description: 'Run a shell command', input_schema: { type: 'object', properties: {} } },
  { name: 'Read', description: 'Read a file', input_schema: { type: 'object', properties: {} } },
];
const MCP_TOOL: Anthropic.Tool = {
  name: 'mcp__github__create_issue',
  description: 'Create an issue',
  input_schema: { type: 'object', properties: {} },
};
const SYSTEM =
  'You are Claude Code, an interactive CLI tool that helps users with software engineering tasks.';

interface SessionSession {
  tools: Anthropic.Tool[];
  system: string;
  model: string;
  ttl: '5m' | '1h';
  /** The conversation so far, without cache markers. */
  messages: Anthropic.MessageParam[];
}

/** Claude Code's main agent at its first turn: its tools, its system prompt, Sonnet, the 5-minute cache. */
const mainAgent = (): SessionSession => ({
  tools: [...TOOLS],
  system: SYSTEM,
  model: 'claude-sonnet-4-6',
  ttl: '5m',
  messages: [],
});

/**
 * One turn as Claude Code sends it: the tool list, a system prompt and the newest message marked
 * for caching, the whole conversation each time. The mock answers with the usage the test says the
 * cache would report for it.
 */
async function turn(
  client: Anthropic,
  mock: AnthropicMock,
  s: SessionSession,
  prompt: string,
  usage: Omit<MockUsage, 'output_tokens'>,
): Promise<void> {
  s.messages.push({ role: 'user', content: prompt });
  const marked: Anthropic.MessageParam[] = s.messages.map((m, i) =>
    i === s.messages.length - 1
      ? {
          role: m.role,
          content: [
            { type: 'text', text: String(m.content), cache_control: { type: 'ephemeral', ttl: s.ttl } },
          ],
        }
      : m,
  );
  mock.next({ kind: 'text', text: `answer to ${prompt}`, usage: { ...usage, output_tokens: 20 } });
  const stream = client.messages.stream({
    model: s.model,
    max_tokens: 1024,
    tools: s.tools,
    system: [{ type: 'text', text: s.system, cache_control: { type: 'ephemeral', ttl: s.ttl } }],
    messages: marked,
  });
  const msg = await stream.finalMessage();
  assert.equal(msg.usage.cache_read_input_tokens, usage.cache_read_input_tokens);
  s.messages.push({ role: 'assistant', content: `answer to ${prompt}` });
}

/** A turn whose context so far was cached and grows by `grow` tokens. */
const grows = (cached: number, grow: number): Omit<MockUsage, 'output_tokens'> => ({
  input_tokens: 3,
  cache_read_input_tokens: cached,
  cache_creation_input_tokens: grow,
});
/** A turn that rewrites its whole context of `context` tokens. */
const rewrites = (context: number): Omit<MockUsage, 'output_tokens'> => ({
  input_tokens: 3,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: context,
});

interface SessionView {
  sessionId: string;
  cacheBreaks: { interceptionId: string; cause: string; excessUsd: number | null }[];
}

for (const storeKind of ['embedded', 'postgres'] as const) {
  describe(`prompt-cache breaks (${storeKind} store)`, function () {
    this.timeout(120_000);
    let mock: AnthropicMock;
    let openaiMock: OpenAIMock;
    let tb: TestBridge;
    let env: Record<string, string>;
    const clock = new TestClock(Date.parse('2026-11-10T09:00:00.000Z'));
    let dev: { key: string; user: { id: string } };
    let live: LiveTestClient;

    const claude = (session: string): Anthropic =>
      new Anthropic({
        apiKey: dev.key,
        baseURL: `${tb.url}/anthropic`,
        maxRetries: 0,
        defaultHeaders: { 'x-claude-code-session-id': session },
      });

    const bySession = async (session: string): Promise<Interception[]> => {
      await tb.bridge.recorder.drain();
      const res = await tb.api<{ items: Interception[] }>(
        'GET',
        `/api/v1/interceptions?session=${session}&limit=100`,
        tb.adminKey,
      );
      return res.body.items.reverse();
    };

    before(async () => {
      mock = await new AnthropicMock().start();
      openaiMock = await new OpenAIMock().start();
      env = { AIBRIDGE_OPENAI_BASE_URL: openaiMock.url };
      if (storeKind === 'postgres')
        env.AIBRIDGE_DATABASE_URL = await (await testPostgres()).createDatabase('cachebreaks');
      tb = await startBridge(mock.url, env, undefined, { clock });
      const d = await tb.addUser('agent-dev@example.com', { team: 'platform' });
      dev = { key: d.key, user: d.user };
      live = liveClient(tb.url, { key: dev.key });
      await new Promise<void>((resolve) => live.ws.once('open', () => resolve()));
    });

    after(async () => {
      await live.close();
      await tb.close();
      await mock.stop();
      await openaiMock.stop();
    });

    it('classifies a tool-list change, a model switch, a 6-minute gap and an edited context, and prices each', async () => {
      const sid = `sess-breaks-${storeKind}`;
      const client = claude(sid);
      const s = mainAgent();
      await turn(client, mock, s, 'look at the repo', rewrites(20_000)); // 1: the first write
      clock.advance(30_000);
      await turn(client, mock, s, 'run the tests', grows(20_000, 2_000)); // 2: cached, grows
      clock.advance(30_000);
      s.tools.push(MCP_TOOL); // an MCP server connected mid-session
      await turn(client, mock, s, 'file an issue', rewrites(22_600)); // 3: tools_changed
      clock.advance(30_000);
      await turn(client, mock, s, 'and link it', grows(22_600, 500)); // 4
      clock.advance(30_000);
      s.model = 'claude-opus-4-1'; // /model opus
      await turn(client, mock, s, 'think harder', rewrites(23_400)); // 5: model_changed
      clock.advance(30_000);
      await turn(client, mock, s, 'go on', grows(23_400, 400)); // 6
      clock.advance(6 * 60_000); // a coffee: longer than the 5-minute cache
      await turn(client, mock, s, 'back again', rewrites(24_000)); // 7: ttl_expired
      clock.advance(30_000);
      await turn(client, mock, s, 'continue', grows(24_000, 300)); // 8

      // A restart (or another replica): the previous turn is read back from the store.
      await tb.close();
      tb = await startBridge(mock.url, env, tb.dataDir, { clock });
      await live.close();
      live = liveClient(tb.url, { key: dev.key });
      await new Promise<void>((resolve) => live.ws.once('open', () => resolve()));
      clock.advance(30_000);
      s.messages[1] = { role: 'assistant', content: 'an earlier answer, edited' };
      await turn(claude(sid), mock, s, 'with that fixed', rewrites(24_600)); // 9: context_edited
      const cb = await live.next('cache.break', (e) => e.sessionId === sid);

      const recs = await bySession(sid);
      assert.equal(recs.length, 9);
      const breaks = recs.map((r) => r.cacheBreak?.cause ?? null);
      assert.deepEqual(breaks, [
        null,
        null,
        'tools_changed',
        null,
        'model_changed',
        null,
        'ttl_expired',
        null,
        'context_edited',
      ]);
      const sonnet = (tokens: number): number =>
        usd((tokens * (SONNET_46.cacheWrite - SONNET_46.cacheRead)) / 1e6);
      const opus = (tokens: number): number => usd((tokens * (OPUS_41.cacheWrite - OPUS_41.cacheRead)) / 1e6);
      // What could have been read: the previous turn's cached prefix.
      assert.deepEqual(recs[2]!.cacheBreak, {
        cause: 'tools_changed',
        excessUsd: sonnet(22_000),
        tokens: 22_000,
        previousInterceptionId: recs[1]!.id,
      });
      assert.equal(recs[4]!.cacheBreak?.excessUsd, opus(23_100));
      assert.equal(recs[6]!.cacheBreak?.excessUsd, opus(23_800));
      assert.equal(recs[8]!.cacheBreak?.excessUsd, opus(24_300));
      assert.equal(recs[8]!.cacheBreak?.previousInterceptionId, recs[7]!.id);
      // The fingerprint is hashes, never the prompt.
      assert.equal(recs[0]!.cacheKey?.ttlSeconds, 300);
      assert.equal(recs[0]!.cacheKey?.mode, 'explicit');
      assert.ok(!JSON.stringify(recs[0]!.cacheKey).includes('Claude Code'));

      assert.equal(cb.interceptionId, recs[8]!.id);
      assert.equal(cb.cause, 'context_edited');
      assert.equal(cb.excessUsd, opus(24_300));
      assert.equal(cb.userEmail, 'agent-dev@example.com');

      const sessions = await tb.api<{ items: SessionView[] }>('GET', '/api/v1/sessions', tb.adminKey);
      const view = sessions.body.items.find((x) => x.sessionId === sid)!;
      assert.deepEqual(view.cacheBreaks, [
        { interceptionId: recs[2]!.id, cause: 'tools_changed', excessUsd: sonnet(22_000) },
        { interceptionId: recs[4]!.id, cause: 'model_changed', excessUsd: opus(23_100) },
        { interceptionId: recs[6]!.id, cause: 'ttl_expired', excessUsd: opus(23_800) },
        { interceptionId: recs[8]!.id, cause: 'context_edited', excessUsd: opus(24_300) },
      ]);

      const total = usd(sonnet(22_000) + opus(23_100) + opus(23_800) + opus(24_300));
      const byTeam = await tb.api<{
        rows: { key: string; breaks: number; cacheBreakExcessUsd: number; byCause: Record<string, number> }[];
      }>('GET', '/api/v1/cache-breaks?period=month&groupBy=team', tb.adminKey);
      assert.equal(byTeam.status, 200, JSON.stringify(byTeam.body));
      const platform = byTeam.body.rows.find((r) => r.key === 'platform')!;
      assert.equal(platform.breaks, 4);
      assert.equal(platform.cacheBreakExcessUsd, total);
      assert.equal(platform.byCause.ttl_expired, 1);
      const mine = await tb.api<{ rows: { key: string; cacheBreakExcessUsd: number }[] }>(
        'GET',
        '/api/v1/cache-breaks?groupBy=user',
        dev.key,
      );
      assert.deepEqual(
        mine.body.rows.map((r) => [r.key, r.cacheBreakExcessUsd]),
        [['agent-dev@example.com', total]],
      );
    });

    it('judges each turn against its own conversation: side requests and subagents in the session neither hide a break nor make one', async () => {
      const sid = `sess-side-${storeKind}`;
      const client = claude(sid);
      const main = mainAgent();
      // Claude Code's small side requests (a command's prefix, the topic) on Haiku, in the same
      // session, their own system prompt cached; and a subagent with its own tools and prompt.
      const side = async (usage: Omit<MockUsage, 'output_tokens'>) => {
        const s: SessionSession = {
          tools: [],
          system: 'Detect the topic. '.repeat(10),
          model: 'claude-haiku-4-5',
          ttl: '5m',
          messages: [],
        };
        clock.advance(1_000);
        await turn(client, mock, s, 'is this a new topic?', usage);
      };
      const subagent: SessionSession = {
        tools: [TOOLS[1]!],
        system: 'You are a file search agent.',
        model: 'claude-sonnet-4-6',
        ttl: '5m',
        messages: [],
      };
      const next = async (s: SessionSession, prompt: string, usage: Omit<MockUsage, 'output_tokens'>) => {
        clock.advance(10_000);
        await turn(client, mock, s, prompt, usage);
      };
      const small = { input_tokens: 900, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
      await next(main, 'look at the repo', rewrites(20_000)); // 0
      await side(small); // 1: below the cacheable minimum, caches nothing
      await next(main, 'run the tests', grows(20_000, 2_000)); // 2
      await side(small); // 3
      main.tools.push(MCP_TOOL);
      await next(main, 'file an issue', rewrites(22_600)); // 4: tools_changed, against 2
      await side(rewrites(3_100)); // 5: a side prompt long enough to cache
      await next(subagent, 'find the config files', rewrites(5_000)); // 6: a subagent's first turn
      main.model = 'claude-opus-4-1';
      await next(main, 'think harder', rewrites(23_400)); // 7: model_changed, against 4
      await next(subagent, 'and the tests', grows(5_000, 300)); // 8
      await side(grows(3_100, 0)); // 9
      main.system = `${SYSTEM} Today is Tuesday.`;
      await next(main, 'go on', rewrites(24_000)); // 10: system_changed, against 7

      const recs = await bySession(sid);
      assert.equal(recs.length, 11);
      assert.deepEqual(
        recs.map((r) => r.cacheBreak?.cause ?? null),
        [null, null, null, null, 'tools_changed', null, null, 'model_changed', null, null, 'system_changed'],
      );
      assert.equal(recs[4]!.cacheBreak?.previousInterceptionId, recs[2]!.id);
      assert.equal(recs[4]!.cacheBreak?.tokens, 22_000, 'what the main conversation had cached');
      assert.equal(recs[7]!.cacheBreak?.previousInterceptionId, recs[4]!.id);
      assert.equal(recs[7]!.cacheBreak?.tokens, 22_600);
      assert.equal(recs[10]!.cacheBreak?.previousInterceptionId, recs[7]!.id);
    });

    it('finds the main agent’s last turn past a long subagent run', async () => {
      const sid = `sess-long-sub-${storeKind}`;
      const client = claude(sid);
      const main = mainAgent();
      const subagent: SessionSession = {
        tools: [TOOLS[0]!],
        system: 'You are a test runner agent.',
        model: 'claude-sonnet-4-6',
        ttl: '5m',
        messages: [],
      };
      await turn(client, mock, main, 'fix the build', rewrites(40_000));
      clock.advance(1_000);
      await turn(client, mock, subagent, 'run every test', rewrites(4_000));
      for (let i = 0; i < 24; i++) {
        clock.advance(1_000);
        await turn(client, mock, subagent, `and the next ${i}`, grows(4_000 + i * 10, 10));
      }
      clock.advance(6 * 60_000); // past the main agent's 5-minute cache
      await turn(client, mock, main, 'what did it find?', rewrites(41_000));
      const recs = await bySession(sid);
      assert.equal(recs.length, 27);
      const last = recs.at(-1)!;
      assert.equal(last.cacheBreak?.cause, 'ttl_expired');
      assert.equal(last.cacheBreak?.previousInterceptionId, recs[0]!.id);
      assert.equal(last.cacheBreak?.tokens, 40_000);
      assert.ok(
        recs.slice(0, -1).every((r) => !r.cacheBreak),
        'the subagent’s turns are no breaks',
      );
    });

    it('marks no break in a session whose cache only grows, across gaps under a 1-hour TTL, nor on small turns', async () => {
      const sid = `sess-grows-${storeKind}`;
      const client = claude(sid);
      const s: SessionSession = {
        tools: [...TOOLS],
        system: SYSTEM,
        model: 'claude-sonnet-4-6',
        ttl: '1h',
        messages: [],
      };
      await turn(client, mock, s, 'one', rewrites(18_000));
      let cached = 18_000;
      for (const prompt of ['two', 'three', 'four', 'five']) {
        clock.advance(10 * 60_000); // past 5 minutes, well within the hour
        await turn(client, mock, s, prompt, grows(cached, 700));
        cached += 700;
      }
      // Small turns (a title, a quota check) cache nothing worth naming.
      const small = claude(`${sid}-small`);
      const t: SessionSession = {
        tools: [],
        system: 'Title this',
        model: 'claude-haiku-4-5',
        ttl: '5m',
        messages: [],
      };
      await turn(small, mock, t, 'a', rewrites(300));
      await turn(small, mock, t, 'b', rewrites(400));
      const recs = await bySession(sid);
      assert.equal(recs.length, 5);
      assert.equal(recs[0]!.cacheKey?.ttlSeconds, 3600);
      assert.deepEqual(
        recs.map((r) => r.cacheBreak ?? null),
        [null, null, null, null, null],
      );
      // A changed system prompt rewrites everything after the tools: a break.
      clock.advance(30_000);
      s.system = `${SYSTEM} Today is Wednesday.`;
      await turn(client, mock, s, 'six', rewrites(cached + 600));
      const after = await bySession(sid);
      assert.equal(after[5]!.cacheBreak?.cause, 'system_changed');
      for (const r of await bySession(`${sid}-small`)) assert.equal(r.cacheBreak ?? null, null);
    });

    if (storeKind === 'postgres')
      it('compares with the newest turn whichever replica served it', async () => {
        const sid = 'sess-replicas';
        const replica = await startBridge(mock.url, env, tb.dataDir, { clock });
        try {
          const onA = claude(sid);
          const onB = new Anthropic({
            apiKey: dev.key,
            baseURL: `${replica.url}/anthropic`,
            maxRetries: 0,
            defaultHeaders: { 'x-claude-code-session-id': sid },
          });
          const s = mainAgent();
          await turn(onA, mock, s, 'one', rewrites(20_000));
          clock.advance(30_000);
          await turn(onA, mock, s, 'two', grows(20_000, 1_000));
          await tb.bridge.recorder.drain();
          clock.advance(30_000);
          s.tools.push(MCP_TOOL);
          await turn(onB, mock, s, 'three', rewrites(21_500)); // B has never seen the session
          await replica.bridge.recorder.drain();
          clock.advance(30_000);
          await turn(onB, mock, s, 'four', grows(21_500, 200));
          await replica.bridge.recorder.drain();
          clock.advance(6 * 60_000);
          await turn(onA, mock, s, 'five', rewrites(22_000)); // A remembers turn two; the store has four
          const recs = await bySession(sid);
          assert.deepEqual(
            recs.map((r) => r.cacheBreak?.cause ?? null),
            [null, null, 'tools_changed', null, 'ttl_expired'],
          );
          assert.equal(recs[2]!.cacheBreak?.previousInterceptionId, recs[1]!.id);
          assert.equal(recs[4]!.cacheBreak?.previousInterceptionId, recs[3]!.id);
          assert.equal(recs[4]!.cacheBreak?.tokens, 21_700);
        } finally {
          await replica.close();
        }
      });

    it('detects a break from OpenAI cached_tokens (automatic prefix caching)', async () => {
      const sid = `codex-thread-${storeKind}`;
      const client = new OpenAI({
        apiKey: dev.key,
        baseURL: `${tb.url}/openai/v1`,
        maxRetries: 0,
        defaultHeaders: { 'session-id': sid },
      });
      const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'system', content: 'You are Codex.' }];
      const tools: OpenAI.ChatCompletionTool[] = [
        { type: 'function', function: { name: 'shell', parameters: { type: 'object', properties: {} } } },
      ];
      const ask = async (prompt: string, u: { input: number; cached: number }): Promise<void> => {
        messages.push({ role: 'user', content: prompt });
        openaiMock.next({ kind: 'text', text: 'ok', usage: { ...u, output: 10, reasoning: 0 } });
        const res = await client.chat.completions.create({ model: 'gpt-5', messages, tools });
        assert.equal(res.usage?.prompt_tokens_details?.cached_tokens, u.cached);
        messages.push({ role: 'assistant', content: 'ok' });
      };
      await ask('first', { input: 12_000, cached: 0 });
      clock.advance(20_000);
      await ask('second', { input: 12_500, cached: 11_900 }); // cached: no break
      clock.advance(20_000);
      await ask('third', { input: 13_000, cached: 12_400 });
      clock.advance(20_000);
      tools.push({ type: 'function', function: { name: 'apply_patch', parameters: { type: 'object' } } });
      await ask('fourth', { input: 13_600, cached: 0 }); // the new tool list: nothing cached
      const recs = await bySession(sid);
      assert.deepEqual(
        recs.map((r) => r.cacheBreak?.cause ?? null),
        [null, null, null, 'tools_changed'],
      );
      assert.equal(recs[3]!.cacheKey?.mode, 'automatic');
      // The previous prompt (13,000 tokens) could all have been read.
      assert.deepEqual(recs[3]!.cacheBreak, {
        cause: 'tools_changed',
        tokens: 13_000,
        excessUsd: usd((13_000 * (GPT_5.input - GPT_5.cacheRead)) / 1e6),
        previousInterceptionId: recs[2]!.id,
      });
    });

    it('detects a break on a streamed Responses session (Codex), from input_tokens_details.cached_tokens', async () => {
      const sid = `codex-responses-${storeKind}`;
      const client = new OpenAI({
        apiKey: dev.key,
        baseURL: `${tb.url}/openai/v1`,
        maxRetries: 0,
        defaultHeaders: { 'session-id': sid },
      });
      const input: OpenAI.Responses.ResponseInputItem[] = [];
      let instructions = 'You are Codex, a coding agent.';
      const ask = async (prompt: string, u: { input: number; cached: number }): Promise<void> => {
        input.push({ role: 'user', content: prompt });
        openaiMock.next({ kind: 'text', text: 'ok', usage: { ...u, output: 10, reasoning: 0 } });
        const stream = await client.responses.create({ model: 'gpt-5', instructions, input, stream: true });
        for await (const _ of stream) {
          // drained: the usage comes in the last event
        }
        input.push({ role: 'assistant', content: 'ok' });
      };
      await ask('first', { input: 8_000, cached: 0 });
      clock.advance(20_000);
      await ask('second', { input: 8_400, cached: 7_900 });
      clock.advance(20_000);
      instructions = 'You are Codex, a coding agent. Sandbox: read-only.';
      await ask('third', { input: 8_800, cached: 0 });
      const recs = await bySession(sid);
      assert.equal(recs.length, 3);
      assert.ok(recs.every((r) => r.api === 'responses' && r.streamed));
      assert.deepEqual(
        recs.map((r) => r.cacheBreak?.cause ?? null),
        [null, null, 'system_changed'],
      );
      assert.equal(recs[2]!.cacheBreak?.tokens, 8_400);
    });
  });
}
