import assert from 'node:assert/strict';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile, unknownFieldAnswer } from '../helpers/keyed-upstream';

describe('member-chosen text quoted in a 400 is never read as the key’s fault (other paths)', function () {
  this.timeout(30000);
  let up: KeyedUpstream;
  let backup: KeyedUpstream;
  let tb: TestBridge;
  let member: string;
  before(async () => {
    up = await new KeyedUpstream().start();
    backup = await new KeyedUpstream().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        anthropic: {
          type: 'anthropic',
          baseUrl: up.url,
          keys: [1, 2].map((i) => ({ name: `k${i}`, key: `sk-ant-k${i}-aaaaaaaaaaaaaaaaaaaa` })),
        },
        primary: { type: 'anthropic', baseUrl: up.url, apiKey: 'sk-ant-primary-bbbbbbbbbbbbbbbbbbbb' },
        backup: { type: 'anthropic', baseUrl: backup.url, apiKey: 'sk-ant-backup-cccccccccccccccccccc' },
        gem: {
          type: 'gemini',
          baseUrl: up.url,
          keys: [1, 2].map((i) => ({ name: `g${i}`, key: `AIzaG${i}dddddddddddddddddddddddddddd` })),
        },
      },
      routes: { 'claude-opus-4-5': ['primary', 'backup'] },
    });
    tb = await startBridge(up.url, { AIBRIDGE_PROVIDERS_FILE: file });
    member = (await tb.addUser('mallory@example.com')).key;
    up.rule = unknownFieldAnswer;
    backup.rule = unknownFieldAnswer;
  });
  after(async () => {
    await tb?.close();
    await up?.stop();
    await backup?.stop();
  });

  const states = async (instance: string) =>
    (
      await tb.api<{ items: { state: string }[] }>('GET', `/api/v1/providers/${instance}/keys`, tb.adminKey)
    ).body.items.map((k) => k.state);

  it('count_tokens pass-through: a field named "credit balance is too low" takes no pool key out', async () => {
    const r = await post(`${tb.url}/anthropic/v1/messages/count_tokens`, member, {
      model: 'claude-sonnet-4-6',
      messages: [{ role: 'user', content: 'hi' }],
      'credit balance is too low': 1,
    });
    assert.equal(r.status, 400);
    assert.deepEqual(
      await states('anthropic'),
      ['active', 'active'],
      'a free, unmetered call took a key out',
    );
  });

  it('single credential on a route: the member’s 400 stays their 400: no failover, no alert, /readyz unchanged', async () => {
    const r = await post(`${tb.url}/anthropic/v1/messages`, member, {
      model: 'claude-opus-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
      'Your API key has been disabled': 1,
    });
    const alerts = await tb.api<{ items: { rule: string; message: string }[] }>(
      'GET',
      '/api/v1/alerts',
      tb.adminKey,
    );
    const ready = await tb.api<{ upstreams?: Record<string, { credential?: unknown }> }>(
      'GET',
      '/readyz',
      tb.adminKey,
    );
    assert.deepEqual(
      {
        status: r.status,
        backupAsked: backup.hits.length,
        alerted: alerts.body.items.some((a) => /primary/.test(a.message)),
        primaryCredential: ready.body.upstreams?.primary?.credential,
      },
      { status: 400, backupAsked: 0, alerted: false, primaryCredential: { ok: true } },
      r.text,
    );
  });

  it('Gemini: a field named "API key not valid" takes no Gemini pool key out', async () => {
    const r = await fetch(`${tb.url}/gem/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': member },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }], 'API key not valid': 1 }),
    });
    const text = await r.text();
    assert.deepEqual(
      { status: r.status, keys: await states('gem') },
      { status: 400, keys: ['active', 'active'] },
      text,
    );
  });
});
