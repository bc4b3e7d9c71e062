import assert from 'node:assert/strict';
import { inputBeyondBody } from '../../server/providers/common';

describe('inputBeyondBody: what makes a request read more than its body (the budget floor)', () => {
  it('counts every form of a stored-item reference the ownership check takes, not only item_reference', () => {
    // Each reads a stored item upstream: reserved as a request that may be larger than its body.
    // `{"id": …}` alone and a reasoning item without its content were reserved as their few bytes,
    // so parallel requests naming them got past a block budget.
    for (const item of [
      { type: 'item_reference', id: 'msg_1' },
      { id: 'msg_1' },
      { id: 'msg_1', type: '' },
      { id: 'msg_1', role: '' },
      { id: 'msg_1', type: null, role: null },
      { type: 'reasoning', id: 'rs_1', summary: [] },
      { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: '' },
    ])
      assert.deepEqual(
        inputBeyondBody({ model: 'gpt-5', input: [item, { role: 'user', content: 'go on' }] }),
        ['item reference'],
        JSON.stringify(item),
      );
    // Items that carry their own content, whatever their id.
    for (const item of [
      { id: 'msg_1', role: 'assistant', content: [{ type: 'output_text', text: 'hi' }] },
      { type: 'reasoning', id: 'rs_1', summary: [], encrypted_content: 'gAAAA' },
      { type: 'function_call', id: 'fc_1', call_id: 'c', name: 'f', arguments: '{}' },
    ])
      assert.deepEqual(inputBeyondBody({ model: 'gpt-5', input: [item] }), [], JSON.stringify(item));
  });
});
