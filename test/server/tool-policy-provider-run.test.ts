import assert from 'node:assert/strict';
import type { Interception } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { OpenAIMock } from '../helpers/openai-mock';

/**
 * Tools the provider runs itself (an MCP connector's servers, hosted `mcp`, code execution): nothing
 * can be held before they run, so a caller under a deny rule may not ask for them; their calls are
 * judged under the names MCP tools go by (docs/governance.md).
 */
describe('tool-call policy: tools the provider runs', function () {
  this.timeout(30_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let gemini: GeminiMock;
  let tb: TestBridge;
  let guarded: { key: string };
  let free: { key: string };

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    gemini = await startGeminiMock();
    tb = await startBridge(anthropic.url, {
      AIBRIDGE_OPENAI_BASE_URL: openai.url,
      AIBRIDGE_GEMINI_BASE_URL: gemini.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
    });
    guarded = await tb.addUser('provider-run-guarded@example.com', { team: 'guarded' });
    free = await tb.addUser('provider-run-free@example.com', { team: 'free' });
    const put = await tb.api('PUT', '/api/v1/tool-policy', tb.adminKey, {
      rules: [
        { id: 'no-merge', tool: 'mcp__github__merge_*', action: 'deny', scope: 'team', subject: 'guarded' },
        { id: 'flag-docs', tool: 'mcp__docs__*', action: 'audit', scope: 'team', subject: 'free' },
      ],
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });
  after(async () => {
    await tb.close();
    await gemini.stop();
    await openai.stop();
    await anthropic.stop();
  });

  const post = (path: string, key: string, body: unknown) =>
    fetch(`${tb.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify(body),
    });

  it('refuses them under a deny rule, before the provider is asked: Anthropic mcp_servers and code execution, Responses hosted mcp and code_interpreter, Gemini code execution', async () => {
    const seen = anthropic.requests.length + openai.requests.length + gemini.seen.length;
    const cases: [string, unknown][] = [
      [
        '/anthropic/v1/messages',
        {
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          mcp_servers: [{ type: 'url', url: 'https://mcp.example/github', name: 'github' }],
          messages: [{ role: 'user', content: 'merge it' }],
        },
      ],
      [
        '/anthropic/v1/messages',
        {
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          tools: [{ type: 'code_execution_20250825', name: 'code_execution' }],
          messages: [{ role: 'user', content: 'run it' }],
        },
      ],
      [
        '/openai/v1/responses',
        {
          model: 'gpt-5',
          input: 'merge it',
          tools: [
            {
              type: 'mcp',
              server_label: 'github',
              server_url: 'https://mcp.example/github',
              require_approval: 'never',
            },
          ],
        },
      ],
      [
        '/openai/v1/responses',
        {
          model: 'gpt-5',
          input: 'run it',
          tools: [{ type: 'code_interpreter', container: { type: 'auto' } }],
        },
      ],
      [
        '/gemini/v1beta/models/gemini-2.5-flash:generateContent',
        { contents: [{ role: 'user', parts: [{ text: 'run it' }] }], tools: [{ codeExecution: {} }] },
      ],
    ];
    for (const [path, body] of cases) {
      const res = await post(path, guarded.key, body);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(body).slice(0, 80)}`);
      assert.equal(res.headers.get('x-aibridge-error-code'), 'unsupported_parameter');
      assert.match(await res.text(), /Tool-call rules apply to you/);
    }
    assert.equal(
      anthropic.requests.length + openai.requests.length + gemini.seen.length,
      seen,
      'nothing reached a provider',
    );
    // Without a deny rule they are served.
    const served = await post('/openai/v1/responses', free.key, cases[2]![1]);
    assert.equal(served.status, 200);
    await served.text();
  });

  it('judges a hosted MCP call under mcp__<server>__<tool>: an audit rule on the server flags it', async () => {
    openai.next({ kind: 'mixed-tools' });
    const res = await post('/openai/v1/responses', free.key, { model: 'gpt-5', input: 'search the docs' });
    assert.equal(res.status, 200);
    const id = res.headers.get('x-aibridge-interception-id');
    await res.text();
    const rec = await eventually(async () =>
      (await tb.interceptions(2, free.key)).find((r: Interception) => r.id === id),
    );
    const call = rec.toolCalls.find((c) => c.name === 'search_docs');
    assert.ok(call, JSON.stringify(rec.toolCalls));
    assert.equal(call.server, 'docs');
    assert.deepEqual(call.policy, { rule: 'flag-docs', action: 'audit' });
  });
});
