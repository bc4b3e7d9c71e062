import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { withBridgeProvider } from '../../extension/codex/codex-config';
import { codexHome, runCodexExec } from '../helpers/agent-cli';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { OPENAI_TEXT, OpenAIMock } from '../helpers/openai-mock';

/** What codex prints when its Responses WebSocket fails and it carries on over HTTP. */
const FALLBACK = /Falling back from WebSockets to HTTPS transport/;

/**
 * Codex over WebSocket (docs/routing.md#codex-over-websocket): the bridge serves the Responses API
 * over HTTP only. The extension's provider table keeps codex there; a table that asks for
 * WebSockets gets its upgrade refused and codex falls back, so every turn is still metered.
 */
describe('the real codex CLI and the Responses WebSocket', function () {
  this.timeout(180_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;
  let tb: TestBridge;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
    tb = await startBridge(anthropic.url, { AIBRIDGE_OPENAI_BASE_URL: openai.url });
  });
  after(async () => {
    await tb.close();
    await openai.stop();
    await anthropic.stop();
  });

  it("the extension's table (supports_websockets = false) keeps codex on HTTP: no upgrade tried, the turn recorded", async () => {
    const dev = await tb.addUser('codex-http@example.com', { team: 'agents' });
    const written = withBridgeProvider('model = "gpt-5-codex"\n', { url: tb.url, makeDefault: true });
    assert.ok(written.ok);
    assert.match(written.text, /^supports_websockets = false$/m);
    const home = await codexHome(`${tb.url}/openai/v1`);
    await fs.writeFile(path.join(home, '.codex', 'config.toml'), written.text);
    const res = await runCodexExec({ home, key: dev.key }, 'Stay on HTTP');
    assert.ok(res.stdout.includes(OPENAI_TEXT), `codex output: ${res.stdout}\n${res.stderr}`);
    assert.doesNotMatch(res.stderr, FALLBACK);
    const recs = await tb.interceptions(1, dev.key);
    const mine = recs.find((r) => r.prompt?.includes('Stay on HTTP'));
    assert.ok(mine, 'the turn is recorded');
    assert.equal(mine.api, 'responses');
    assert.equal(mine.client, 'codex');
  });

  it('a table with supports_websockets = true: the upgrade is refused, codex falls back to HTTP, the turn is recorded', async () => {
    const dev = await tb.addUser('codex-ws@example.com', { team: 'agents' });
    const home = await codexHome(`${tb.url}/openai/v1`);
    // The provider table is the file's last: the key lands in it.
    await fs.appendFile(path.join(home, '.codex', 'config.toml'), 'supports_websockets = true\n');
    const res = await runCodexExec({ home, key: dev.key }, 'Asked for a WebSocket');
    const refused = tb.logs.filter(
      (l) => l.includes('refused a WebSocket upgrade') && l.includes('/responses'),
    );
    assert.ok(refused.length >= 1, 'codex tried the WebSocket first');
    // Refused with 426, it falls back at once; a 404 it retried seven times ("Reconnecting... 1/5"), ~6 s a run.
    assert.doesNotMatch(res.stderr, /Reconnecting/, res.stderr);
    assert.ok(refused.length <= 2, `${refused.length} upgrade attempts`);
    assert.ok(res.stdout.includes(OPENAI_TEXT), `codex output: ${res.stdout}\n${res.stderr}`);
    const recs = await tb.interceptions(1, dev.key);
    const mine = recs.find((r) => r.prompt?.includes('Asked for a WebSocket'));
    assert.ok(mine, 'the turn went over HTTP and is recorded');
    assert.equal(mine.status, 'ok');
    assert.equal(mine.streamed, true);
  });
});
