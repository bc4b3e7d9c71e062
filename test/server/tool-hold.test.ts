import assert from 'node:assert/strict';
import { messagesHold } from '../../server/providers/anthropic/messages-hold';
import { responsesHold } from '../../server/providers/openai/responses-hold';
import type { HeldCall, StreamHold, ToolJudge } from '../../server/providers/tool-hold';

const denyRm: ToolJudge = (c: HeldCall) =>
  JSON.stringify(c.input).includes('rm -rf') ? { rule: 'r1', message: `blocked ${c.name}` } : undefined;

function sse(event: string, data: unknown, eol = '\n'): string {
  return `event: ${event}${eol}data: ${JSON.stringify(data)}${eol}${eol}`;
}

function anthropicStream(command: string, eol = '\n'): string {
  const json = JSON.stringify({ command });
  return [
    sse('message_start', { type: 'message_start', message: { id: 'm', content: [], usage: {} } }, eol),
    sse(
      'content_block_start',
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      eol,
    ),
    sse(
      'content_block_delta',
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi' } },
      eol,
    ),
    sse('content_block_stop', { type: 'content_block_stop', index: 0 }, eol),
    sse(
      'content_block_start',
      {
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'toolu_1', name: 'Bash', input: {} },
      },
      eol,
    ),
    `: a comment${eol}${eol}`,
    sse(
      'content_block_delta',
      {
        type: 'content_block_delta',
        index: 1,
        delta: { type: 'input_json_delta', partial_json: json.slice(0, 7) },
      },
      eol,
    ),
    sse('ping', { type: 'ping' }, eol),
    sse(
      'content_block_delta',
      {
        type: 'content_block_delta',
        index: 1,
        delta: { type: 'input_json_delta', partial_json: json.slice(7) },
      },
      eol,
    ),
    sse('content_block_stop', { type: 'content_block_stop', index: 1 }, eol),
    sse(
      'message_delta',
      { type: 'message_delta', delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 3 } },
      eol,
    ),
    sse('message_stop', { type: 'message_stop' }, eol),
  ].join('');
}

/** Feeds `text` in pieces of `size` characters and collects what the hold lets out. */
function run(hold: StreamHold, text: string, size: number): string {
  let out = '';
  for (let i = 0; i < text.length; i += size) out += hold.push(text.slice(i, i + size));
  return out + hold.end();
}

/** The data objects of a stream, in order. */
function events(text: string): Record<string, unknown>[] {
  return text
    .split(/\r\n\r\n|\n\n/)
    .flatMap((f) => f.split(/\r\n|\n/).filter((l) => l.startsWith('data: ')))
    .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>);
}

describe('tool holds (stream transforms)', () => {
  it('pass an allowed stream through byte for byte, however it is cut, with LF or CRLF', () => {
    for (const eol of ['\n', '\r\n']) {
      const upstream = anthropicStream('ls -la', eol);
      for (const size of [1, 2, 7, 64, upstream.length])
        assert.equal(
          run(messagesHold.createStream(denyRm), upstream, size),
          upstream,
          `eol ${JSON.stringify(eol)}, size ${size}`,
        );
    }
  });

  it('replace a denied block the same way however the stream is cut, with LF or CRLF', () => {
    const whole = run(
      messagesHold.createStream(denyRm),
      anthropicStream('rm -rf /'),
      Number.MAX_SAFE_INTEGER,
    );
    const evs = events(whole);
    assert.deepEqual(
      evs.map((e) => e.type),
      [
        'message_start',
        'content_block_start',
        'content_block_delta',
        'content_block_stop',
        'content_block_start',
        'content_block_delta',
        'content_block_stop',
        'ping',
        'message_delta',
        'message_stop',
      ],
    );
    assert.deepEqual(evs[4], {
      type: 'content_block_start',
      index: 1,
      content_block: { type: 'text', text: '' },
    });
    assert.deepEqual(evs[5], {
      type: 'content_block_delta',
      index: 1,
      delta: { type: 'text_delta', text: 'blocked Bash' },
    });
    assert.equal((evs[8]!.delta as { stop_reason: string }).stop_reason, 'end_turn');
    assert.ok(!whole.includes('tool_use'));
    for (const eol of ['\n', '\r\n'])
      for (const size of [1, 3, 50]) {
        const got = run(messagesHold.createStream(denyRm), anthropicStream('rm -rf /', eol), size);
        assert.deepEqual(events(got), evs, `eol ${JSON.stringify(eol)}, size ${size}`);
      }
  });

  it('let text out at once and hold only the tool block until it is complete', () => {
    const frames = anthropicStream('rm -rf /').split(/(?<=\n\n)/);
    const hold = messagesHold.createStream(denyRm);
    const outs = frames.map((f) => hold.push(f));
    for (let i = 0; i < 4; i++) assert.equal(outs[i], frames[i], `frame ${i} passes as it arrives`);
    for (let i = 4; i < 9; i++) assert.equal(outs[i], '', `frame ${i} of the tool block is held`);
    assert.ok(outs[9]!.includes('blocked Bash'), 'released when the block stops');
    assert.equal(outs[10], frames[10]!.replace('"tool_use"', '"end_turn"'));
  });

  it('never leak a denied call from a stream cut mid-block', () => {
    const upstream = anthropicStream('rm -rf /');
    const cut = upstream.slice(
      0,
      upstream.indexOf('event: content_block_stop', upstream.indexOf('tool_use')),
    );
    const out = run(messagesHold.createStream(denyRm), cut, 5);
    assert.ok(!out.includes('tool_use') && !out.includes('input_json_delta'));
    assert.ok(out.includes('blocked Bash'));

    const responses = [
      sse('response.created', { type: 'response.created', sequence_number: 0, response: { output: [] } }),
      sse('response.output_item.added', {
        type: 'response.output_item.added',
        sequence_number: 1,
        output_index: 0,
        item: { type: 'function_call', id: 'fc_1', call_id: 'c1', name: 'shell', arguments: '' },
      }),
      sse('response.function_call_arguments.delta', {
        type: 'response.function_call_arguments.delta',
        sequence_number: 2,
        output_index: 0,
        item_id: 'fc_1',
        delta: '{"command":"rm -rf /"}',
      }),
    ].join('');
    const r = run(responsesHold.createStream(denyRm), responses, 4);
    assert.equal(r, responses.split(/(?<=\n\n)/)[0], 'only what came before the call');
  });

  it('judge a Responses call wherever it first shows whole: a done with no added, only the closing output, or still held at the end', () => {
    const call = {
      type: 'function_call',
      id: 'fc_9',
      call_id: 'c9',
      name: 'shell',
      arguments: '{"command":"rm -rf /"}',
    };
    const created = sse('response.created', {
      type: 'response.created',
      sequence_number: 0,
      response: { output: [] },
    });
    const completed = (seq: number) =>
      sse('response.completed', {
        type: 'response.completed',
        sequence_number: seq,
        response: { output: [call] },
      });
    const streams = {
      'a done with no added': [
        created,
        sse('response.output_item.done', {
          type: 'response.output_item.done',
          sequence_number: 1,
          output_index: 0,
          item: call,
        }),
        completed(2),
      ],
      'only in the closing output': [created, completed(1)],
      'added, then the end with no done': [
        created,
        sse('response.output_item.added', {
          type: 'response.output_item.added',
          sequence_number: 1,
          output_index: 0,
          item: { ...call, arguments: '' },
        }),
        completed(2),
      ],
    };
    for (const [what, frames] of Object.entries(streams)) {
      const judged: string[] = [];
      const judge: ToolJudge = (c) => {
        judged.push(c.id);
        return denyRm(c);
      };
      const out = run(responsesHold.createStream(judge), frames.join(''), 5);
      assert.ok(!out.includes('rm -rf'), `${what}: the denied call reached the client`);
      assert.ok(out.includes('blocked shell'), `${what}: no denial in its place`);
      assert.ok(out.includes('event: response.completed'), `${what}: the response still ends`);
      assert.deepEqual(judged, ['c9'], `${what}: judged once`);
    }
    // An allowed call in the closing output passes as it came, judged once.
    const allowed = { ...call, arguments: '{"command":"ls"}' };
    const judged: string[] = [];
    const stream = [
      created,
      sse('response.completed', {
        type: 'response.completed',
        sequence_number: 1,
        response: { output: [allowed] },
      }),
    ].join('');
    const out = run(
      responsesHold.createStream((c) => {
        judged.push(c.id);
        return denyRm(c);
      }),
      stream,
      5,
    );
    assert.equal(out, stream);
    assert.deepEqual(judged, ['c9']);
  });

  it('judge a Responses call again when it is not the one judged: no id, a repeated done, an id reused with other arguments', () => {
    const created = sse('response.created', {
      type: 'response.created',
      sequence_number: 0,
      response: { output: [] },
    });
    const call = (id: string | undefined, command: string) => ({
      type: 'function_call',
      ...(id === undefined ? {} : { id }),
      call_id: `c_${command.length}`,
      name: 'shell',
      arguments: JSON.stringify({ command }),
    });
    const added = (seq: number, index: number, item: unknown) =>
      sse('response.output_item.added', {
        type: 'response.output_item.added',
        sequence_number: seq,
        output_index: index,
        item,
      });
    const done = (seq: number, index: number, item: unknown) =>
      sse('response.output_item.done', {
        type: 'response.output_item.done',
        sequence_number: seq,
        output_index: index,
        item,
      });
    const completed = (seq: number, output: unknown[]) =>
      sse('response.completed', { type: 'response.completed', sequence_number: seq, response: { output } });
    const cases: Record<string, string[]> = {
      // An allowed call with no id streamed, then a denied one with no id only in the closing output.
      'no ids': [
        created,
        added(1, 0, call(undefined, 'ls')),
        done(2, 0, call(undefined, 'ls')),
        completed(3, [call(undefined, 'ls'), call(undefined, 'rm -rf /')]),
      ],
      // A denied call, replaced, then its done again.
      'a repeated done': [
        created,
        added(1, 0, call('fc_1', 'rm -rf /')),
        done(2, 0, call('fc_1', 'rm -rf /')),
        done(3, 0, call('fc_1', 'rm -rf /')),
        completed(4, [call('fc_1', 'rm -rf /')]),
      ],
      // An allowed call, then the closing output naming its id with other arguments.
      'an id reused': [
        created,
        added(1, 0, call('fc_2', 'ls')),
        done(2, 0, call('fc_2', 'ls')),
        completed(3, [call('fc_2', 'rm -rf /')]),
      ],
    };
    for (const [what, frames] of Object.entries(cases)) {
      const out = run(responsesHold.createStream(denyRm), frames.join(''), 7);
      assert.ok(!out.includes('rm -rf'), `${what}: the denied call reached the client`);
      assert.ok(out.includes('blocked shell'), `${what}: no denial in its place`);
      assert.ok(out.includes('event: response.completed'), `${what}: the response still ends`);
    }
    // An id denied, then reused for an allowed call: the allowed call is not replaced by the old denial.
    const reused = [
      created,
      added(1, 0, call('fc_3', 'rm -rf /')),
      done(2, 0, call('fc_3', 'rm -rf /')),
      done(3, 1, call('fc_3', 'ls')),
      completed(4, [call('fc_3', 'ls')]),
    ].join('');
    const out = run(responsesHold.createStream(denyRm), reused, 7);
    const last = out.slice(out.indexOf('event: response.completed'));
    assert.ok(
      last.includes('"function_call"') && last.includes('ls'),
      `the allowed call is in the output: ${last}`,
    );
    assert.ok(!out.includes('rm -rf'));
  });

  it('judge every kind of call a Responses client runs: shell, apply_patch and computer items too', () => {
    const items = [
      {
        type: 'shell_call',
        id: 'sh_1',
        call_id: 'c_sh',
        action: { commands: ['rm -rf /'] },
        status: 'completed',
      },
      {
        type: 'apply_patch_call',
        id: 'ap_1',
        call_id: 'c_ap',
        operation: { type: 'delete_file', path: 'rm -rf' },
        status: 'completed',
      },
      { type: 'computer_call', id: 'cu_1', call_id: 'c_cu', action: { type: 'type', text: 'rm -rf /' } },
    ];
    for (const item of items) {
      const stream = [
        sse('response.created', { type: 'response.created', sequence_number: 0, response: { output: [] } }),
        sse('response.output_item.added', {
          type: 'response.output_item.added',
          sequence_number: 1,
          output_index: 0,
          item: { ...item, status: 'in_progress' },
        }),
        sse('response.output_item.done', {
          type: 'response.output_item.done',
          sequence_number: 2,
          output_index: 0,
          item,
        }),
        sse('response.completed', {
          type: 'response.completed',
          sequence_number: 3,
          response: { output: [item] },
        }),
      ].join('');
      const out = run(responsesHold.createStream(denyRm), stream, 7);
      assert.ok(!out.includes('rm -rf'), `${item.type}: the denied call reached the client`);
      assert.ok(out.includes('blocked'), `${item.type}: no denial message in its place`);
      const whole = responsesHold.rewriteJson({ output: [item] }, denyRm) as { output: { type: string }[] };
      assert.deepEqual(
        whole.output.map((o) => o.type),
        ['message'],
        `${item.type} answered whole`,
      );
    }
  });
});
