import assert from 'node:assert/strict';
import type { InterceptionStart } from '../../server/core/facts';
import { responsesApi } from '../../server/providers/openai/responses';
import { Governance } from '../../server/spend/governance';
import { PriceBook } from '../../server/spend/prices';

const responses = responsesApi;

function start(body: Record<string, unknown>): InterceptionStart {
  return {
    id: 'int_x',
    principal: { user: { id: 'u', email: 'u@example.com', team: null, role: 'member' } } as never,
    provider: 'openai',
    api: responses.name,
    client: 'test',
    request: responses.describeRequest(body, {}),
    startedAt: new Date(),
  };
}

describe('the budget estimate of a request whose body does not bound its cost', () => {
  // Only the estimate is exercised: the other collaborators are never reached.
  const gov = new Governance(
    undefined as never,
    undefined as never,
    undefined as never,
    new PriceBook(),
    undefined as never,
    4096,
    0.25,
  );
  const capped = { model: 'gpt-4o', max_output_tokens: 40, input: 'hi' };

  it('is the body and output cap when they bound it', () => {
    const usd = gov.estimateUsd(start(capped), JSON.stringify(capped).length);
    assert.ok(usd > 0 && usd < 0.01, `a tiny capped request is cheap, got ${usd}`);
  });

  it('is at least the floor with previous_response_id, a server tool, a file reference or no output cap', () => {
    const cases: Record<string, unknown>[] = [
      { ...capped, previous_response_id: 'resp_1' },
      { ...capped, tools: [{ type: 'web_search' }] },
      { ...capped, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] },
      { model: 'gpt-4o', input: 'hi' },
    ];
    for (const body of cases) {
      const usd = gov.estimateUsd(start(body), JSON.stringify(body).length);
      assert.ok(usd >= 0.25, `${JSON.stringify(body)} → ${usd}`);
    }
  });
});
