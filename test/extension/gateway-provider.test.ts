import assert from 'node:assert/strict';
import { Emitter } from '../../extension/emitter';
import {
  GATEWAY_LABEL,
  type GatewaySession,
  gatewayProvider,
  type HttpServerDefinition,
} from '../../extension/mcp/gateway-provider';

/** What VS Code's McpHttpServerDefinition holds; the URI as a string, as vscode.Uri prints it. */
class Definition implements HttpServerDefinition {
  headers: Record<string, string> = {};
  constructor(
    public label: string,
    public uri: string,
    public version: string,
  ) {}
}

describe("extension: VS Code's MCP server definition for the gateway", () => {
  let session: GatewaySession | undefined;
  const changed = new Emitter<void>();
  const provider = gatewayProvider(
    () => session,
    changed.event,
    (label, url, version) => new Definition(label, url, version),
  );

  it('lists nothing while signed out, and the gateway without any key while signed in', () => {
    session = undefined;
    assert.deepEqual(provider.provideMcpServerDefinitions(), []);
    session = { url: 'https://bridge.example.com', key: 'aib_secret' };
    const [d, ...rest] = provider.provideMcpServerDefinitions();
    assert.deepEqual(rest, []);
    assert.equal(d?.label, GATEWAY_LABEL);
    assert.equal(d?.uri, 'https://bridge.example.com/mcp');
    assert.equal(d?.version, 'https://bridge.example.com', 'another bridge is another tool list');
    assert.ok(!JSON.stringify(d).includes('aib_secret'), 'the listed (cached) definition has no key');
  });

  it("adds the current key as a bearer header when VS Code connects; none after sign-out or for another bridge's URL", () => {
    session = { url: 'https://bridge.example.com', key: 'aib_first' };
    const [d] = provider.provideMcpServerDefinitions();
    assert.ok(d);
    // A renewed key is the one sent.
    session = { url: 'https://bridge.example.com', key: 'aib_renewed' };
    assert.deepEqual(provider.resolveMcpServerDefinition(d)?.headers, {
      Authorization: 'Bearer aib_renewed',
    });
    session = { url: 'https://other.example.com', key: 'aib_other' };
    assert.equal(
      provider.resolveMcpServerDefinition(new Definition(GATEWAY_LABEL, d.uri, d.version)),
      undefined,
    );
    session = undefined;
    assert.equal(
      provider.resolveMcpServerDefinition(new Definition(GATEWAY_LABEL, d.uri, d.version)),
      undefined,
    );
  });

  it('tells VS Code when the list changes through the event it is given', () => {
    let fired = 0;
    const sub = provider.onDidChangeMcpServerDefinitions(() => fired++);
    changed.fire();
    sub.dispose();
    changed.fire();
    assert.equal(fired, 1);
  });
});
