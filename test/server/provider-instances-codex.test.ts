import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { codexHome, runCodexExec } from '../helpers/agent-cli';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { AZURE_KEY, AZURE_USAGE, COMPAT_TEXT, CompatMock, OLLAMA_USAGE } from '../helpers/compat-mocks';

describe('the real codex CLI through provider instances (Ollama- and Azure-shaped)', function () {
  this.timeout(120_000);
  let ollama: CompatMock;
  let azure: CompatMock;
  let tb: TestBridge;

  before(async () => {
    ollama = await new CompatMock('ollama').start();
    azure = await new CompatMock('azure').start();
    const dir = await tempDir();
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          ollama: { type: 'openai-compatible', baseUrl: `${ollama.url}/v1`, prices: 'free' },
          azure: {
            type: 'azure-openai',
            baseUrl: `${azure.url}/openai/v1`,
            apiKey: AZURE_KEY,
            deployments: { 'codex-dep': 'gpt-4o' },
          },
        },
      }),
    );
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
  });
  after(async () => {
    await tb?.close();
    await ollama?.stop();
    await azure?.stop();
  });

  async function codex(instance: string, model: string, key: string, prompt: string): Promise<void> {
    const home = await codexHome(`${tb.url}/${instance}/v1`, { model });
    const res = await runCodexExec({ home, key }, prompt);
    assert.ok(res.stdout.includes(COMPAT_TEXT), `codex output: ${res.stdout}\n${res.stderr}`);
  }

  it('codex exec through an Ollama instance: metered, recorded as free', async () => {
    const dev = await tb.addUser('codex-ollama@example.com');
    await codex('ollama', 'gpt-oss:20b', dev.key, 'Say hello to ollama');
    const sent = ollama.requests.filter((r) => r.url === '/v1/responses');
    assert.ok(sent.length >= 1, 'codex reached the Ollama mock');
    assert.equal(sent[0]!.headers.authorization, undefined, 'the bridge key is not forwarded');
    const recs = await tb.interceptions(sent.length, dev.key);
    const mine = recs.find((r) => r.prompt?.includes('Say hello to ollama'));
    assert.ok(mine);
    assert.equal(mine.provider, 'ollama');
    assert.equal(mine.client, 'codex');
    assert.equal(mine.usage.input, OLLAMA_USAGE.prompt);
    assert.equal(mine.costUsd, 0);
    assert.equal(mine.costSource, 'free');
  });

  it('codex exec through an Azure instance: api-key upstream, deployment priced as its model', async () => {
    const dev = await tb.addUser('codex-azure@example.com');
    await codex('azure', 'codex-dep', dev.key, 'Say hello to azure');
    const sent = azure.requests.filter((r) => r.url === '/openai/v1/responses');
    assert.ok(sent.length >= 1, 'codex reached the Azure mock');
    assert.equal(sent[0]!.headers['api-key'], AZURE_KEY);
    assert.equal(sent[0]!.headers.authorization, undefined);
    const recs = await tb.interceptions(sent.length, dev.key);
    const mine = recs.find((r) => r.prompt?.includes('Say hello to azure'));
    assert.ok(mine);
    assert.equal(mine.provider, 'azure');
    assert.equal(mine.model, 'gpt-4o');
    assert.equal(mine.usage.output, AZURE_USAGE.completion);
    assert.ok(mine.costUsd !== null && mine.costUsd > 0);
  });
});
