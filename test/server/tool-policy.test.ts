import assert from 'node:assert/strict';
import fs from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { AccessLogEntry } from '../../server/store/types';
import type { Interception, ToolCallRecord } from '../../shared/interception';
import type { ToolPolicyDoc, ToolPolicyDryRun, ToolPolicyRule } from '../../shared/tool-policy';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';
import { type ModelTurn, ToolModelMock } from '../helpers/tool-model-mock';

const RULES: ToolPolicyRule[] = [
  { id: 'rm-root', tool: 'Bash', argumentPattern: 'rm -rf /', action: 'deny', scope: 'org' },
  { id: 'ssh-read', tool: 'Read', argumentPattern: String.raw`\.ssh/`, action: 'audit', scope: 'org' },
  // Applies to another team only: never to the test user.
  { id: 'red-team-only', tool: '*', action: 'deny', scope: 'team', subject: 'red' },
];

const ALLOWED = { name: 'Bash', input: { command: 'ls -la' } };
const DENIED = { name: 'Bash', input: { command: 'rm -rf / --no-preserve-root' } };
const FLAGGED = { name: 'Read', input: { file_path: '/home/dev/.ssh/id_rsa' } };
const BLOCKED_TEXT = 'AI Bridge blocked Bash: rm -rf / --no-preserve-root (rule rm-root)';

const MIXED: ModelTurn = { text: 'Let me look around.', calls: [ALLOWED, DENIED, FLAGGED] };
const ONLY_DENIED: ModelTurn = { text: 'Cleaning up.', calls: [DENIED] };

const TOOLS_ANTHROPIC = ['Bash', 'Read'].map((name) => ({
  name,
  description: name,
  input_schema: { type: 'object' as const, properties: {} },
}));
const TOOLS_CHAT = ['Bash', 'Read'].map((name) => ({
  type: 'function' as const,
  function: { name, parameters: { type: 'object', properties: {} } },
}));
const TOOLS_RESPONSES = ['Bash', 'Read'].map((name) => ({
  type: 'function' as const,
  name,
  parameters: { type: 'object', properties: {} },
  strict: false,
}));

function byName(calls: ToolCallRecord[], name: string, cmd?: string): ToolCallRecord | undefined {
  return calls.find((c) => c.name === name && (!cmd || JSON.stringify(c.input).includes(cmd)));
}

/** The record of the newest request, once it is stored. */
async function lastRecord(tb: TestBridge, n: number): Promise<Interception> {
  const items = await tb.interceptions(n);
  assert.ok(items.length >= n, `${n} records`);
  return items[0]!;
}

function assertAudited(rec: Interception, calls: number): void {
  assert.equal(rec.toolCalls.length, calls, 'every call the model made is on the record, the denied one too');
  assert.deepEqual(byName(rec.toolCalls, 'Bash', 'rm -rf')?.policy, { rule: 'rm-root', action: 'deny' });
  if (calls > 1) {
    assert.deepEqual(byName(rec.toolCalls, 'Read')?.policy, { rule: 'ssh-read', action: 'audit' });
    assert.equal(
      byName(rec.toolCalls, 'Bash', 'ls -la')?.policy,
      undefined,
      'an allowed call carries no policy',
    );
  }
}

describe('tool-call policy', function () {
  this.timeout(30_000);
  let mock: ToolModelMock;
  let tb: TestBridge;
  let dev: { key: string; user: { id: string } };
  let anthropic: Anthropic;
  let openai: OpenAI;
  let records = 0;

  before(async () => {
    mock = await new ToolModelMock().start();
    tb = await startBridge(mock.url, { AIBRIDGE_OPENAI_BASE_URL: `${mock.url}/v1` });
    dev = await tb.addUser('agent@example.com', { team: 'blue' });
    anthropic = new Anthropic({ apiKey: dev.key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    openai = new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
  });

  after(async () => {
    await tb?.close();
    await mock?.stop();
  });

  describe('the rules API', () => {
    it('starts empty, takes a rule set from an admin only, and returns it as stored', async () => {
      const empty = await tb.api<ToolPolicyDoc>('GET', '/api/v1/tool-policy', tb.adminKey);
      assert.deepEqual(empty.body, { rules: [], updatedAt: null });
      const member = await tb.api('PUT', '/api/v1/tool-policy', dev.key, { rules: RULES });
      assert.equal(member.status, 403);
      const put = await tb.api<ToolPolicyDoc>('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: RULES });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body.rules, RULES);
      const got = await tb.api<ToolPolicyDoc>('GET', '/api/v1/tool-policy', tb.adminKey);
      assert.deepEqual(got.body.rules, RULES);
      assert.equal(typeof got.body.updatedAt, 'string');
    });

    it('refuses bad bodies with invalid_tool_policy naming the rule and field, storing nothing', async () => {
      const bad: [unknown, string][] = [
        [{ rules: 'x' }, 'rules: must be an array'],
        [{ rules: [], extra: 1 }, 'extra: unknown field'],
        [{ rules: [RULES[0], { ...RULES[1], argumentPattern: '(unclosed' }] }, 'rules[1].argumentPattern'],
        [{ rules: [{ ...RULES[0], action: 'block' }] }, 'rules[0].action'],
        [{ rules: [{ ...RULES[0], scope: 'galaxy' }] }, 'rules[0].scope'],
        [{ rules: [{ ...RULES[0], scope: 'team' }] }, 'rules[0].subject'],
        [{ rules: [RULES[0], RULES[0]] }, 'rules[1].id'],
        [{ rules: [{ ...RULES[0], tool: '' }] }, 'rules[0].tool'],
        [{ rules: [{ ...RULES[0], enabled: 'yes' }] }, 'rules[0].enabled'],
        [{ rules: [{ ...RULES[0], color: 'red' }] }, 'rules[0].color: unknown field'],
      ];
      for (const [body, where] of bad) {
        const r = await tb.api<{ error: { code: string; message: string } }>(
          'PUT',
          '/api/v1/tool-policy',
          tb.adminKey,
          body,
        );
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.body.error.code, 'invalid_tool_policy');
        assert.ok(r.body.error.message.includes(where), `${r.body.error.message} names ${where}`);
      }
      const got = await tb.api<ToolPolicyDoc>('GET', '/api/v1/tool-policy', tb.adminKey);
      assert.deepEqual(got.body.rules, RULES, 'the stored set is unchanged');
    });

    it('serves the documented examples as a body PUT accepts, and they match what they describe', async () => {
      const ex = await tb.api<{ rules: ToolPolicyRule[] }>(
        'GET',
        '/api/v1/tool-policy/examples',
        tb.adminKey,
      );
      assert.equal(ex.status, 200);
      const ids = ex.body.rules.map((r) => r.id);
      assert.deepEqual(ids, [
        'no-rm-rf-outside-workspace',
        'no-force-push-protected',
        'no-curl-pipe-shell',
        'flag-credential-reads',
      ]);
      const doc = fs.readFileSync('docs/governance.md', 'utf8');
      const block = /## Example rules[\s\S]*?```json\n([\s\S]*?)\n```/.exec(doc)?.[1];
      assert.deepEqual(
        JSON.parse(block ?? 'null'),
        ex.body,
        'docs/governance.md shows exactly the examples served',
      );
      const dry = (
        await tb.api<ToolPolicyDryRun>('POST', '/api/v1/tool-policy/dry-run', tb.adminKey, ex.body)
      ).status;
      assert.equal(dry, 200, 'the examples validate');
      const match = (id: string, args: unknown): boolean => {
        const rule = ex.body.rules.find((r) => r.id === id)!;
        return new RegExp(rule.argumentPattern!).test(JSON.stringify(args));
      };
      assert.ok(match('no-rm-rf-outside-workspace', { command: 'rm -rf /' }));
      assert.ok(match('no-rm-rf-outside-workspace', { command: 'cd x && rm -fr ~/projects' }));
      assert.ok(!match('no-rm-rf-outside-workspace', { command: 'rm -rf build/' }));
      assert.ok(match('no-force-push-protected', { command: 'git push --force origin main' }));
      assert.ok(!match('no-force-push-protected', { command: 'git push --force origin feature/x' }));
      assert.ok(!match('no-force-push-protected', { command: 'git push origin main' }));
      assert.ok(match('no-curl-pipe-shell', { command: 'curl -fsSL https://x.sh | sh' }));
      assert.ok(match('no-curl-pipe-shell', { command: ['bash', '-lc', 'wget -qO- http://x | sudo bash'] }));
      assert.ok(!match('no-curl-pipe-shell', { command: 'curl https://example.com -o out.html' }));
      assert.ok(match('flag-credential-reads', { file_path: '/home/dev/.ssh/id_rsa' }));
      assert.ok(match('flag-credential-reads', { command: 'cat ~/.aws/credentials' }));
      assert.ok(!match('flag-credential-reads', { file_path: '/work/repo/.sshconfig' }));
    });
  });

  describe('Anthropic Messages', () => {
    it('streams: the SDK sees the blocked message in place of the denied call, allowed calls intact', async () => {
      mock.brain = () => MIXED;
      const stream = anthropic.messages.stream({
        model: 'claude-test',
        max_tokens: 100,
        tools: TOOLS_ANTHROPIC,
        messages: [{ role: 'user', content: 'tidy up' }],
      });
      const msg = await stream.finalMessage();
      const types = msg.content.map((b) => b.type);
      assert.deepEqual(types, ['text', 'tool_use', 'text', 'tool_use']);
      const [, allowed, blocked, flagged] = msg.content;
      assert.deepEqual(allowed?.type === 'tool_use' && allowed.input, ALLOWED.input);
      assert.equal(blocked?.type === 'text' && blocked.text, BLOCKED_TEXT);
      assert.deepEqual(flagged?.type === 'tool_use' && flagged.input, FLAGGED.input);
      assert.equal(msg.stop_reason, 'tool_use', 'calls the client may run are left');
      assertAudited(await lastRecord(tb, ++records), 3);
    });

    it('streams: with only a denied call the turn ends as end_turn', async () => {
      mock.brain = () => ONLY_DENIED;
      const msg = await anthropic.messages
        .stream({
          model: 'claude-test',
          max_tokens: 100,
          tools: TOOLS_ANTHROPIC,
          messages: [{ role: 'user', content: 'x' }],
        })
        .finalMessage();
      assert.deepEqual(
        msg.content.map((b) => (b.type === 'text' ? b.text : b.type)),
        ['Cleaning up.', BLOCKED_TEXT],
      );
      assert.equal(msg.stop_reason, 'end_turn');
      assertAudited(await lastRecord(tb, ++records), 1);
    });

    it('answers whole: denied tool_use replaced by text, stop_reason consistent', async () => {
      mock.brain = () => ONLY_DENIED;
      const msg = await anthropic.messages.create({
        model: 'claude-test',
        max_tokens: 100,
        tools: TOOLS_ANTHROPIC,
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.deepEqual(
        msg.content.map((b) => (b.type === 'text' ? b.text : b.type)),
        ['Cleaning up.', BLOCKED_TEXT],
      );
      assert.equal(msg.stop_reason, 'end_turn');
      assertAudited(await lastRecord(tb, ++records), 1);

      mock.brain = () => MIXED;
      const mixed = await anthropic.messages.create({
        model: 'claude-test',
        max_tokens: 100,
        tools: TOOLS_ANTHROPIC,
        messages: [{ role: 'user', content: 'x' }],
      });
      assert.deepEqual(
        mixed.content.map((b) => b.type),
        ['text', 'tool_use', 'text', 'tool_use'],
      );
      assert.equal(mixed.stop_reason, 'tool_use');
      assertAudited(await lastRecord(tb, ++records), 3);
    });

    it('sends text before a held call as it arrives, not when the call is judged', async () => {
      mock.brain = () => ONLY_DENIED;
      mock.eventDelayMs = 80;
      try {
        const started = Date.now();
        const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': dev.key,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
          body: JSON.stringify({
            model: 'claude-test',
            max_tokens: 100,
            stream: true,
            tools: TOOLS_ANTHROPIC,
            messages: [{ role: 'user', content: 'x' }],
          }),
        });
        let text = '';
        let firstText = 0;
        let blocked = 0;
        const decoder = new TextDecoder();
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          text += decoder.decode(chunk, { stream: true });
          if (!firstText && text.includes('text_delta')) firstText = Date.now() - started;
          if (!blocked && text.includes('AI Bridge blocked')) blocked = Date.now() - started;
        }
        assert.ok(firstText > 0 && blocked > 0);
        // Four events of the tool block (80 ms apart) separate the two.
        assert.ok(
          blocked - firstText >= 250,
          `text at ${firstText} ms, the blocked message at ${blocked} ms`,
        );
      } finally {
        mock.eventDelayMs = 0;
      }
      records++;
    });

    it('relays a stream byte for byte when nothing is denied, though deny rules apply', async () => {
      mock.brain = () => ({ text: 'Looking.', calls: [ALLOWED, FLAGGED] });
      for (const stream of [true, false]) {
        const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': dev.key,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
          body: JSON.stringify({
            model: 'claude-test',
            max_tokens: 100,
            stream,
            tools: TOOLS_ANTHROPIC,
            messages: [{ role: 'user', content: 'x' }],
          }),
        });
        const got = await res.text();
        assert.equal(got, mock.sent.at(-1), `identical bytes (stream: ${stream})`);
        records++;
      }
    });
  });

  describe('OpenAI Chat Completions', () => {
    it('streams: the SDK sees the message as content, the denied call gone, the rest renumbered', async () => {
      mock.brain = () => MIXED;
      const done = await openai.chat.completions
        .stream({ model: 'gpt-test', tools: TOOLS_CHAT, messages: [{ role: 'user', content: 'tidy up' }] })
        .finalChatCompletion();
      const choice = done.choices[0]!;
      assert.equal(choice.message.content, `Let me look around.${BLOCKED_TEXT}`);
      const calls = choice.message.tool_calls ?? [];
      assert.deepEqual(
        calls.map((c) => (c.type === 'function' ? [c.function.name, JSON.parse(c.function.arguments)] : [])),
        [
          ['Bash', ALLOWED.input],
          ['Read', FLAGGED.input],
        ],
      );
      assert.equal(choice.finish_reason, 'tool_calls');
      assertAudited(await lastRecord(tb, ++records), 3);
    });

    it('streams: with only a denied call, finish_reason is stop', async () => {
      mock.brain = () => ONLY_DENIED;
      const done = await openai.chat.completions
        .stream({
          model: 'gpt-test',
          tools: TOOLS_CHAT,
          messages: [{ role: 'user', content: 'x' }],
          stream_options: { include_usage: true },
        })
        .finalChatCompletion();
      const choice = done.choices[0]!;
      assert.equal(choice.message.content, `Cleaning up.${BLOCKED_TEXT}`);
      assert.equal(choice.message.tool_calls?.length ?? 0, 0);
      assert.equal(choice.finish_reason, 'stop');
      assert.equal(done.usage?.completion_tokens, 8, 'the usage chunk the client asked for still arrives');
      assertAudited(await lastRecord(tb, ++records), 1);
    });

    it('answers whole: denied calls removed, the message appended to content', async () => {
      mock.brain = () => ONLY_DENIED;
      const done = await openai.chat.completions.create({
        model: 'gpt-test',
        tools: TOOLS_CHAT,
        messages: [{ role: 'user', content: 'x' }],
      });
      const choice = done.choices[0]!;
      assert.equal(choice.message.content, `Cleaning up.\n${BLOCKED_TEXT}`);
      assert.equal(choice.message.tool_calls, undefined);
      assert.equal(choice.finish_reason, 'stop');
      assertAudited(await lastRecord(tb, ++records), 1);
    });

    it('relays a stream byte for byte when nothing is denied', async () => {
      mock.brain = () => ({ text: 'Looking.', calls: [ALLOWED, FLAGGED] });
      const res = await fetch(`${tb.url}/openai/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-test',
          stream: true,
          stream_options: { include_usage: true },
          tools: TOOLS_CHAT,
          messages: [{ role: 'user', content: 'x' }],
        }),
      });
      assert.equal(await res.text(), mock.sent.at(-1));
      records++;
    });

    it('refuses the legacy functions form while a deny rule applies (its function_call is never held); serves it otherwise', async () => {
      mock.brain = () => ONLY_DENIED;
      const legacy = {
        model: 'gpt-test',
        functions: [{ name: 'Bash', parameters: { type: 'object', properties: {} } }],
        messages: [{ role: 'user' as const, content: 'x' }],
      };
      const upstreamBefore = mock.requests.length;
      for (const stream of [false, true]) {
        const err = await openai.chat.completions.create({ ...legacy, stream }).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof OpenAI.APIError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.code, 'unsupported_parameter');
        assert.match(err.message, /`tools`/);
        records++;
      }
      assert.equal(mock.requests.length, upstreamBefore, 'the provider is not contacted');
      const refused = await lastRecord(tb, records);
      assert.equal(refused.status, 'error');
      assert.equal(refused.error?.type, 'unsupported_parameter');

      // A user no deny rule applies to (the red-team rule is another team's) is served as before.
      const other = await tb.addUser('legacy@example.com', { team: 'green' });
      await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: RULES.slice(1) });
      try {
        const client = new OpenAI({ apiKey: other.key, baseURL: `${tb.url}/openai/v1`, maxRetries: 0 });
        const ok = await client.chat.completions.create(legacy);
        assert.ok(ok.choices.length > 0);
        assert.equal(mock.requests.length, upstreamBefore + 1);
        records++;
      } finally {
        await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: RULES });
      }
    });
  });

  describe('OpenAI Responses', () => {
    it('streams: the SDK sees a message item in place of the denied call', async () => {
      mock.brain = () => MIXED;
      const final = await openai.responses
        .stream({ model: 'gpt-test', tools: TOOLS_RESPONSES, input: 'tidy up' })
        .finalResponse();
      const kinds = final.output.map((o) => o.type);
      assert.deepEqual(kinds, ['message', 'function_call', 'message', 'function_call']);
      const blocked = final.output[2];
      assert.ok(blocked?.type === 'message');
      const part = blocked.content[0];
      assert.equal(part?.type === 'output_text' && part.text, BLOCKED_TEXT);
      assert.ok(final.output_text.includes(BLOCKED_TEXT));
      assert.ok(
        !final.output.some((o) => o.type === 'function_call' && o.arguments.includes('rm -rf')),
        'the denied call is in no item',
      );
      assertAudited(await lastRecord(tb, ++records), 3);
    });

    it('streams: the events the SDK emits carry the message and never the denied call', async () => {
      mock.brain = () => ONLY_DENIED;
      const stream = openai.responses.stream({ model: 'gpt-test', tools: TOOLS_RESPONSES, input: 'x' });
      const deltas: string[] = [];
      const seen: string[] = [];
      for await (const ev of stream) {
        seen.push(JSON.stringify(ev));
        if (ev.type === 'response.output_text.delta') deltas.push(ev.delta);
      }
      assert.ok(deltas.join('').endsWith(BLOCKED_TEXT));
      assert.ok(!seen.some((e) => e.includes('function_call')), 'no event names the call or its arguments');
      assert.ok(!seen.some((e) => e.includes('--no-preserve-root"')), 'the arguments JSON never appears');
      const final = await stream.finalResponse();
      assert.ok(!final.output.some((o) => o.type === 'function_call'));
      assertAudited(await lastRecord(tb, ++records), 1);
    });

    it('answers whole: the call item becomes a message item', async () => {
      mock.brain = () => ONLY_DENIED;
      const r = await openai.responses.create({ model: 'gpt-test', tools: TOOLS_RESPONSES, input: 'x' });
      assert.deepEqual(
        r.output.map((o) => o.type),
        ['message', 'message'],
      );
      assert.ok(r.output_text.endsWith(BLOCKED_TEXT));
      assertAudited(await lastRecord(tb, ++records), 1);
    });

    it('relays a stream byte for byte when nothing is denied', async () => {
      mock.brain = () => ({ text: 'Looking.', calls: [ALLOWED, FLAGGED] });
      const res = await fetch(`${tb.url}/openai/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-test', stream: true, tools: TOOLS_RESPONSES, input: 'x' }),
      });
      assert.equal(await res.text(), mock.sent.at(-1));
      records++;
    });
  });

  describe('audit, events and metrics', () => {
    it('publishes tool.policy for denied and flagged calls, and counts decisions', async () => {
      const decisions = async (action: string): Promise<number> =>
        (await tb.bridge.metrics.toolPolicyDecisions.get()).values.find((v) => v.labels.action === action)
          ?.value ?? 0;
      const denied0 = await decisions('deny');
      const flagged0 = await decisions('audit');
      const live = liveClient(tb.url, { key: dev.key });
      try {
        await live.next('hello');
        mock.brain = () => MIXED;
        await anthropic.messages.create({
          model: 'claude-test',
          max_tokens: 100,
          tools: TOOLS_ANTHROPIC,
          messages: [{ role: 'user', content: 'x' }],
        });
        const deny = await live.next('tool.policy', (e) => e.action === 'deny');
        assert.equal(deny.tool, 'Bash');
        assert.equal(deny.rule, 'rm-root');
        assert.equal(deny.userId, dev.user.id);
        assert.equal(deny.userEmail, 'agent@example.com');
        assert.equal(deny.summary, 'rm -rf / --no-preserve-root');
        assert.match(deny.interceptionId, /^int_/);
        const audit = await live.next('tool.policy', (e) => e.action === 'audit');
        assert.equal(audit.tool, 'Read');
        assert.equal(audit.summary, '/home/dev/.ssh/id_rsa');
        assert.equal(
          live.events.filter((e) => e.type === 'tool.policy').length,
          2,
          'the allowed call has none',
        );
      } finally {
        await live.close();
      }
      records++;
      assert.equal(await decisions('deny'), denied0 + 1);
      assert.equal(await decisions('audit'), flagged0 + 1);
    });
  });

  describe('dry run', () => {
    it('evaluates a rule set against recorded calls and says what it would have blocked or flagged', async () => {
      await tb.interceptions(records);
      const rules: ToolPolicyRule[] = [
        { id: 'no-ls', tool: 'Bash', argumentPattern: '^\\{"command":"ls', action: 'deny', scope: 'org' },
        { id: 'reads', tool: 'Read', action: 'audit', scope: 'user', subject: 'agent@example.com' },
        { id: 'other-user', tool: '*', action: 'deny', scope: 'user', subject: 'someone@example.com' },
      ];
      const r = await tb.api<ToolPolicyDryRun>('POST', '/api/v1/tool-policy/dry-run', tb.adminKey, {
        rules,
        days: 1,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.days, 1);
      assert.ok(r.body.scanned >= records);
      assert.ok(r.body.denied > 0 && r.body.flagged > 0);
      assert.equal(r.body.items.length, r.body.denied + r.body.flagged);
      assert.ok(r.body.items.every((i) => (i.tool === 'Bash' ? i.rule === 'no-ls' : i.rule === 'reads')));
      assert.ok(
        r.body.items.every((i) => i.userEmail === 'agent@example.com' && i.interceptionId.startsWith('int_')),
      );
      const lsHit = r.body.items.find((i) => i.rule === 'no-ls')!;
      assert.equal(lsHit.summary, 'ls -la');
      // The items are everyone's commands and paths: the read is in the access log, as a search is.
      const log = await tb.api<{ items: AccessLogEntry[] }>('GET', '/api/v1/audit/access-log', tb.adminKey);
      const entry = log.body.items.find((e) => e.route === 'POST /api/v1/tool-policy/dry-run');
      assert.ok(entry, `no access-log entry for the dry run: ${JSON.stringify(log.body.items)}`);
      assert.equal(entry.subjectUserId, null);
      assert.equal(entry.query.days, '1');
      assert.deepEqual(JSON.parse(entry.query.rules!), rules);
      assert.deepEqual(
        (await tb.api<ToolPolicyDoc>('GET', '/api/v1/tool-policy', tb.adminKey)).body.rules,
        RULES,
        'a dry run changes nothing',
      );
      const bad = await tb.api<{ error: { code: string; message: string } }>(
        'POST',
        '/api/v1/tool-policy/dry-run',
        tb.adminKey,
        { rules, days: 0 },
      );
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_tool_policy');
      assert.match(bad.body.error.message, /^days:/);
    });
  });

  describe('without deny rules', () => {
    it('audit rules only: the stream is untouched, the call flagged on the record', async () => {
      const auditOnly = RULES.filter((r) => r.action === 'audit');
      assert.equal(
        (await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: auditOnly })).status,
        200,
      );
      mock.brain = () => ({ text: 'Reading.', calls: [FLAGGED] });
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          'x-api-key': dev.key,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({
          model: 'claude-test',
          max_tokens: 100,
          stream: true,
          tools: TOOLS_ANTHROPIC,
          messages: [{ role: 'user', content: 'x' }],
        }),
      });
      assert.equal(await res.text(), mock.sent.at(-1));
      const rec = await lastRecord(tb, ++records);
      assert.deepEqual(rec.toolCalls[0]?.policy, { rule: 'ssh-read', action: 'audit' });
    });

    it('holds nothing: a denied-looking call passes when the rule is disabled, and no policy is recorded', async () => {
      const off = RULES.map((r) => ({ ...r, enabled: false }));
      assert.equal((await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, { rules: off })).status, 200);
      mock.brain = () => ONLY_DENIED;
      const msg = await anthropic.messages
        .stream({
          model: 'claude-test',
          max_tokens: 100,
          tools: TOOLS_ANTHROPIC,
          messages: [{ role: 'user', content: 'x' }],
        })
        .finalMessage();
      assert.deepEqual(
        msg.content.map((b) => b.type),
        ['text', 'tool_use'],
      );
      const rec = await lastRecord(tb, ++records);
      assert.equal(rec.toolCalls[0]?.policy, undefined);
      await eventually(async () => true);
    });
  });
});
