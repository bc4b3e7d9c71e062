import assert from 'node:assert/strict';
import { BridgeClient } from '../../extension/api/bridge-client';
import type { GatewayToolCall } from '../../shared/interception';
import { startMockedBridge, type TestBridge } from '../helpers/bridge';

function call(id: string, user: { id: string; email: string }): GatewayToolCall {
  return {
    id,
    at: new Date().toISOString(),
    userId: user.id,
    userEmail: user.email,
    team: null,
    keyId: 'key_x',
    client: 'claude-code',
    sessionId: null,
    name: 'docs__search',
    server: 'docs',
    tool: 'search',
    input: {},
    outcome: 'ok',
    durationMs: 1,
    resultBytes: 2,
    error: null,
  };
}

describe("the extension's history reads the signed-in user's own records, an admin's too", () => {
  let tb: TestBridge;
  let close: () => Promise<void>;
  before(async () => {
    ({ tb, close } = await startMockedBridge());
  });
  after(() => close());

  it("an admin's gateway calls list holds the admin's calls, not a member's (the route's default for an admin is everyone's)", async () => {
    const member = await tb.addUser('mallory@example.com');
    const client = new BridgeClient(tb.url, tb.adminKey);
    const admin = (await client.me()).user;
    await tb.bridge.store.appendGatewayCall(call('gwc_member', member.user));
    await tb.bridge.store.appendGatewayCall(call('gwc_admin', admin));
    const mine = await client.gatewayCalls({ limit: 50, user: admin.id });
    assert.deepEqual(
      mine.items.map((c) => c.id),
      ['gwc_admin'],
    );
    // A member naming themselves reads the same as before.
    const theirs = await new BridgeClient(tb.url, member.key).gatewayCalls({
      limit: 50,
      user: member.user.id,
    });
    assert.deepEqual(
      theirs.items.map((c) => c.id),
      ['gwc_member'],
    );
  });
});
