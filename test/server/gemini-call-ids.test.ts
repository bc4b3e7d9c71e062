import assert from 'node:assert/strict';
import { generateContentAt } from '../../server/providers/gemini/generate-content';
import type { JsonObject } from '../../server/providers/types';

const api = generateContentAt('/v1beta/models/gemini-2.5-flash:generateContent');
const at = new Date('2026-01-01T00:00:00Z');

/** The ids the bridge records an answer's calls by. */
function callIds(parts: JsonObject[]): string[] {
  const answer = { candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP' }] };
  return api.fromJson(answer, at).toolCalls.map((c) => c.id);
}

/** The call ids the bridge records a request's results by: `turn` as the client sends it back. */
function resultIds(turn: JsonObject[], results: JsonObject[]): string[] {
  const body = {
    contents: [
      { role: 'user', parts: [{ text: 'go' }] },
      { role: 'model', parts: turn },
      { role: 'user', parts: results.map((functionResponse) => ({ functionResponse })) },
    ],
  };
  return api.describeRequest(body, {}).toolResults.map((r) => r.callId);
}

const call = (args: JsonObject, extra: JsonObject = {}): JsonObject => ({
  functionCall: { name: 'read_file', args },
  ...extra,
});

describe('Gemini tool call ids: a call and its result are known alike on both sides', () => {
  it('an answer without a signature: the dummy one the Gemini CLI puts in its history changes nothing', () => {
    const ids = callIds([call({ path: 'a' }), call({ path: 'b' })]);
    assert.equal(new Set(ids).size, 2);
    for (const id of ids) assert.match(id, /^read_file#[0-9a-f]{16}$/);
    const history = [
      call({ path: 'a' }, { thoughtSignature: 'skip_thought_signature_validator' }),
      call({ path: 'b' }),
    ].map((p, i) => ({ ...p, functionCall: { ...(p.functionCall as JsonObject), id: `read_file_17_${i}` } }));
    assert.deepEqual(
      resultIds(history, [
        { id: 'read_file_17_1', name: 'read_file', response: {} },
        { id: 'read_file_17_0', name: 'read_file', response: {} },
      ]),
      [ids[1], ids[0]],
    );
  });

  it('calls alike in one answer get ids of their own, their results paired in order; a result no call matches, with none', () => {
    const ids = callIds([call({ path: 'a' }), call({ path: 'a' })]);
    assert.equal(new Set(ids).size, 2);
    assert.deepEqual(
      resultIds(
        [call({ path: 'a' }), call({ path: 'a' })],
        [
          { name: 'read_file', response: {} },
          { name: 'read_file', response: {} },
        ],
      ),
      ids,
    );
    // A result naming an id no call has is not paired by name with a call the client named otherwise.
    const turn = [{ functionCall: { id: 'mine_1', name: 'read_file', args: { path: 'a' } } }];
    assert.deepEqual(resultIds(turn, [{ id: 'other_1', name: 'read_file', response: {} }]), ['other_1']);
    // Without the history's call, the client's id (else the name) is all there is.
    const body = {
      contents: [{ role: 'user', parts: [{ functionResponse: { name: 'read_file', response: {} } }] }],
    };
    assert.deepEqual(
      api.describeRequest(body, {}).toolResults.map((r) => r.callId),
      ['read_file'],
    );
  });

  it('the same call in answers signed apart is two calls', () => {
    const [one] = callIds([call({ path: 'a' }, { thoughtSignature: 'c2lnLTE=' })]);
    const [two] = callIds([call({ path: 'a' }, { thoughtSignature: 'c2lnLTI=' })]);
    assert.notEqual(one, two);
  });

  it('arguments nested too deep to write out do not break the answer', () => {
    let deep: unknown = [];
    for (let i = 0; i < 10_000; i++) deep = [deep];
    const ids = callIds([call({ x: deep as JsonObject })]);
    assert.match(ids[0] ?? '', /^read_file#[0-9a-f]{16}$/);
  });

  it('pairing results with calls is linear: 60,000 calls and as many results no call matches, at once', () => {
    // Within the default body and container limits (about 4 MB, 240,000 objects and arrays): a
    // scan of the turn per result took ~15 s here, the event loop blocked for every member.
    const n = 60_000;
    const turn = Array.from({ length: n }, () => ({ functionCall: { id: 'x', name: 'a' } }));
    const results = Array.from({ length: n }, () => ({ id: 'y', name: 'b', response: {} }));
    const started = performance.now();
    const ids = resultIds(turn, results);
    const ms = performance.now() - started;
    assert.equal(ids.length, n);
    assert.equal(ids[0], 'y');
    assert.ok(ms < 2000, `took ${Math.round(ms)} ms`);
    // Pairing is as before: by id first (in order), then by name among calls without an id.
    const mixed = [
      { functionCall: { id: 'k', name: 'read_file', args: { path: 'a' } } },
      { functionCall: { name: 'read_file', args: { path: 'b' } } },
      { functionCall: { id: 'k', name: 'read_file', args: { path: 'c' } } },
      { functionCall: { name: 'read_file', args: { path: 'd' } } },
    ];
    const callsIds = callIds(mixed);
    assert.deepEqual(
      resultIds(mixed, [
        { name: 'read_file', response: {} },
        { id: 'k', name: 'read_file', response: {} },
        { id: 'k', name: 'read_file', response: {} },
        { name: 'read_file', response: {} },
        { name: 'read_file', response: {} },
      ]),
      [callsIds[1], callsIds[0], callsIds[2], callsIds[3], 'read_file'],
    );
  });
});
