import assert from 'node:assert/strict';
import { EXAMPLE_RULES } from '../../server/policy/examples';
import { compileRules, decide } from '../../server/policy/tool-rules';
import { chatHold } from '../../server/providers/openai/chat-hold';
import type { ToolJudge } from '../../server/providers/tool-hold';

const rules = compileRules(EXAMPLE_RULES);
const judge: ToolJudge = (call) => {
  const d = decide(rules, call.name, call.input, 'deny');
  return d && { rule: d.rule, message: `blocked ${call.name} (${d.rule})` };
};

/**
 * Forms of a Chat Completions call an upstream may answer with besides string `arguments` in
 * `tool_calls`: arguments sent as an object, and the legacy `function_call`. Held and judged as any
 * call, so a deny rule is never recorded as a block the client did not get (docs/governance.md).
 */
describe('the Chat Completions tool hold: calls in other forms', () => {
  it('a whole answer: arguments sent as an object, and a legacy function_call, are judged and replaced', () => {
    const answer = {
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'call_1',
                type: 'function',
                function: { name: 'shell', arguments: { command: 'rm -rf /' } },
              },
            ],
          },
          finish_reason: 'tool_calls',
        },
        {
          index: 1,
          message: {
            role: 'assistant',
            content: null,
            function_call: { name: 'shell', arguments: '{"command":"rm -rf ~/"}' },
          },
          finish_reason: 'function_call',
        },
      ],
    };
    const out = chatHold.rewriteJson(answer, judge) as typeof answer;
    assert.ok(out, 'something was denied');
    const [a, b] = out.choices as { message: Record<string, unknown>; finish_reason: string }[];
    assert.equal(a!.message.tool_calls, undefined);
    assert.match(String(a!.message.content), /blocked shell/);
    assert.equal(a!.finish_reason, 'stop');
    assert.equal(b!.message.function_call, undefined);
    assert.match(String(b!.message.content), /blocked shell/);
    assert.equal(b!.finish_reason, 'stop');
  });

  it('a stream: a legacy function_call in pieces is held, and replaced by the message when denied', () => {
    const hold = chatHold.createStream(judge);
    const frame = (delta: Record<string, unknown>, finish: string | null = null) => {
      const data = JSON.stringify({
        id: 'c',
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta, finish_reason: finish }],
      });
      return `data: ${data}\n\n`;
    };
    let out = '';
    out += hold.push(frame({ role: 'assistant', function_call: { name: 'shell', arguments: '' } }));
    out += hold.push(frame({ function_call: { arguments: '{"command":"rm ' } }));
    assert.equal(out, '', 'held while the call streams in');
    out += hold.push(frame({ function_call: { arguments: '-rf /"}' } }));
    out += hold.push(frame({}, 'function_call'));
    out += hold.push('data: [DONE]\n\n');
    out += hold.end();
    assert.doesNotMatch(out, /function_call"?:\s*\{/, 'no function_call delta left');
    assert.match(out, /blocked shell/);
    assert.match(out, /"finish_reason":"stop"/);
  });

  it('a stream: an allowed legacy function_call goes out as it came', () => {
    const hold = chatHold.createStream(judge);
    const frames = [
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: { function_call: { name: 'shell', arguments: '{"command":"ls"}' } }, finish_reason: null }] })}\n\n`,
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'function_call' }] })}\n\n`,
    ];
    const out = frames.map((f) => hold.push(f)).join('') + hold.end();
    assert.equal(out, frames.join(''));
  });
});
