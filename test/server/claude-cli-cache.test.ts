import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { runClaude } from '../helpers/agent-cli';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';

describe('prompt-cache fingerprints of the real claude CLI', function () {
  this.timeout(120_000);
  let mock: AnthropicMock;
  let tb: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
  });
  after(async () => {
    await tb.close();
    await mock.stop();
  });

  it('keeps tools, system prompt and cached prefix stable between two turns of one session: a lost cache is `unknown`', async () => {
    const dev = await tb.addUser('claude-cache@example.com', { team: 'agents' });
    const home = await tempDir('aibridge-claude-home-');
    const notes = path.join(home, 'notes.txt');
    await fs.writeFile(notes, 'the bridge keeps hashes, not prompts\n');
    // Turn 1 writes the cache and asks for a tool; turn 2 (the tool result) finds nothing cached
    // although nothing changed: as if the provider had dropped the cache.
    mock.next(
      {
        kind: 'tool',
        name: 'Read',
        input: { file_path: notes },
        usage: {
          input_tokens: 3,
          output_tokens: 20,
          cache_read_input_tokens: 0,
          cache_creation_input_tokens: 20_000,
        },
      },
      {
        kind: 'text',
        text: 'It says the bridge keeps hashes.',
        usage: {
          input_tokens: 3,
          output_tokens: 20,
          cache_read_input_tokens: 0,
          cache_creation_input_tokens: 20_400,
        },
      },
    );
    const res = await runClaude({ bridgeUrl: tb.url, key: dev.key, home }, [
      '-p',
      'What does notes.txt say?',
      '--allowedTools',
      'Read',
    ]);
    assert.match(res.stdout, /keeps hashes/);

    const sent = mock.messageRequests().filter((r) => r.headers['user-agent']?.startsWith('claude-cli/'));
    const session = sent[0]!.headers['x-claude-code-session-id'] as string;
    const recs = (await tb.interceptions(sent.length, dev.key))
      .filter((r) => r.sessionId === session && r.usage.cacheWrite >= 20_000)
      .reverse();
    assert.equal(recs.length, 2, JSON.stringify(recs.map((r) => r.usage)));
    const [one, two] = recs as [(typeof recs)[0], (typeof recs)[0]];
    assert.equal(one.cacheKey?.mode, 'explicit');
    assert.equal(two.cacheKey?.tools, one.cacheKey?.tools, 'the tool list hashes the same');
    assert.equal(two.cacheKey?.system, one.cacheKey?.system, 'the system prompt hashes the same');
    assert.ok(two.cacheKey!.messages > one.cacheKey!.messages, 'the cache point moved forward');
    assert.equal(two.cacheBreak?.cause, 'unknown');
    assert.equal(two.cacheBreak?.previousInterceptionId, one.id);
  });
});
