import assert from 'node:assert/strict';
import { EXAMPLE_RULES } from '../../server/policy/examples';
import { compileRules, decide } from '../../server/policy/tool-rules';
import { chatCompletionsApi } from '../../server/providers/openai/chat-completions';

const AT = new Date('2026-12-05T00:00:00Z');

/**
 * Chat Completions' legacy `functions` parameter answers with `function_call` instead of
 * `tool_calls`: still a tool call the client runs, recorded (and so flagged by audit rules) as one.
 */
describe('Chat Completions: a legacy function_call is recorded as a tool call', () => {
  const rm = JSON.stringify({ command: 'rm -rf ~/' });

  it('in a whole answer', () => {
    const facts = chatCompletionsApi.fromJson(
      {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        model: 'gpt-4o',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: null, function_call: { name: 'shell', arguments: rm } },
            finish_reason: 'function_call',
          },
        ],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      },
      AT,
    );
    assert.deepEqual(
      facts.toolCalls.map((c) => [c.id, c.name, c.input]),
      [['function_call_0', 'shell', { command: 'rm -rf ~/' }]],
    );
    // What audit rules then see.
    assert.equal(decide(compileRules(EXAMPLE_RULES), 'shell', facts.toolCalls[0]!.input)?.action, 'deny');
  });

  it('streamed, its arguments in pieces', () => {
    const meter = chatCompletionsApi.createStreamMeter({ bytes: Buffer.alloc(0), rewriteStream: false });
    const chunk = (delta: Record<string, unknown>) => ({
      event: undefined,
      id: undefined,
      data: JSON.stringify({
        id: 'c',
        object: 'chat.completion.chunk',
        model: 'gpt-4o',
        choices: [{ index: 0, delta }],
      }),
    });
    meter.onEvent(chunk({ role: 'assistant', function_call: { name: 'shell', arguments: '' } }), AT);
    meter.onEvent(chunk({ function_call: { arguments: rm.slice(0, 9) } }), AT);
    meter.onEvent(chunk({ function_call: { arguments: rm.slice(9) } }), AT);
    assert.deepEqual(
      meter.result().toolCalls.map((c) => [c.name, c.input]),
      [['shell', { command: 'rm -rf ~/' }]],
    );
  });

  it('arguments an upstream sent as an object are recorded and judged as sent, not as {}', () => {
    const facts = chatCompletionsApi.fromJson(
      {
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              tool_calls: [
                {
                  id: 'call_1',
                  type: 'function',
                  function: { name: 'shell', arguments: { command: 'rm -rf /' } },
                },
              ],
            },
          },
        ],
      },
      AT,
    );
    assert.deepEqual(facts.toolCalls[0]!.input, { command: 'rm -rf /' });
  });
});
