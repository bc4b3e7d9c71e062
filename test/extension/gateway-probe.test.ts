import assert from 'node:assert/strict';
import net from 'node:net';
import { GatewayProbe } from '../../extension/mcp/gateway-probe';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { freePort } from '../helpers/loopback';

describe('extension: whether the signed-in bridge offers the MCP gateway', function () {
  this.timeout(30_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
  });
  after(async () => {
    await tb.close();
    await upstream.stop();
  });

  it('a bridge unreachable at sign-in (an offline start) is asked again once reached, and the gateway is found', async () => {
    // The bridge's address, with nothing behind it yet (the network or VPN not up).
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let answers = 0;
    const probe = new GatewayProbe(() => answers++);
    probe.follow(url);
    assert.equal(await probe.has, false);
    assert.equal(probe.found, false);
    assert.equal(answers, 1);

    // The network is back: the same address now reaches the bridge.
    const open = new Set<net.Socket>();
    const relay = net.createServer((c) => {
      const b = net.connect(Number(new URL(tb.url).port), '127.0.0.1');
      c.pipe(b).pipe(c);
      for (const s of [c, b]) {
        open.add(s);
        s.on('error', () => undefined);
      }
    });
    await new Promise<void>((r) => relay.listen(port, '127.0.0.1', r));
    try {
      assert.equal(await probe.reached(), true, 'newly found');
      assert.equal(probe.found, true);
      assert.equal(await probe.has, true);
      assert.equal(answers, 2);
      assert.equal(await probe.reached(), false, 'found already: not asked again');
      assert.equal(answers, 2);
      // Signed out: nothing.
      probe.follow(undefined);
      assert.equal(probe.found, false);
      assert.equal(await probe.has, false);
      assert.equal(await probe.reached(), false);
    } finally {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => relay.close(() => r()));
    }
  });

  it('an answer for a bridge signed out of meanwhile is dropped', async () => {
    let answers = 0;
    const probe = new GatewayProbe(() => answers++);
    probe.follow(tb.url);
    const first = probe.has;
    probe.follow(upstream.url);
    assert.equal(await first, false, 'the answer for a bridge no longer signed in to');
    assert.equal(await probe.has, false, 'the provider mock has no gateway');
    assert.equal(probe.found, false);
    assert.equal(answers, 1);
  });
});
