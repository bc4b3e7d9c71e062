import assert from 'node:assert/strict';
import { BEDROCK_REGION, BedrockMock } from '../helpers/bedrock-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { KeyedUpstream, post, providersFile } from '../helpers/keyed-upstream';

// A Bedrock credential AWS no longer accepts (a rotated secret: InvalidSignatureException 403;
// a revoked key: UnrecognizedClientException 403; an expired session: ExpiredTokenException 403).
// Bedrock never answers 401: its 403 IS the key refusal. blameOf reads it as the request's.
const VARS = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_CONFIG_FILE',
  'AWS_SHARED_CREDENTIALS_FILE',
  'AWS_EC2_METADATA_DISABLED',
  'AWS_PROFILE',
];
describe('a Bedrock credential AWS refuses (its 403) is the key’s fault, as a 401 is elsewhere', function () {
  this.timeout(30000);
  let mock: BedrockMock;
  let backup: KeyedUpstream;
  let tb: TestBridge;
  let member: string;
  const saved = Object.fromEntries(VARS.map((k) => [k, process.env[k]]));
  before(async () => {
    for (const k of VARS) delete process.env[k];
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: 'AKIAROTATEDKEY000001',
      AWS_SECRET_ACCESS_KEY: 'a-secret-that-was-rotated-away-0000000000',
      AWS_CONFIG_FILE: '/nonexistent/x',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/x',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    mock = await new BedrockMock().start();
    backup = await new KeyedUpstream().start();
    const dir = await tempDir();
    const file = await providersFile(dir, {
      providers: {
        bedrock: {
          type: 'bedrock',
          region: BEDROCK_REGION,
          baseUrl: mock.url,
          models: { 'claude-opus-4-5': 'global.anthropic.claude-opus-4-5-20251101-v1:0' },
        },
        backup: { type: 'anthropic', baseUrl: backup.url, apiKey: 'sk-ant-backup-cccccccccccccccccccc' },
      },
      routes: { 'claude-opus-4-5': ['bedrock', 'backup'] },
    });
    tb = await startBridge(backup.url, { AIBRIDGE_PROVIDERS_FILE: file });
    member = (await tb.addUser('m@example.com')).key;
  });
  after(async () => {
    await tb?.close();
    await mock?.close();
    await backup?.stop();
    for (const k of VARS)
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
  });

  it('a routed request fails over to the backup (as for a 401), the admin is alerted, /readyz says refused', async () => {
    const r = await post(`${tb.url}/anthropic/v1/messages`, member, {
      model: 'claude-opus-4-5',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const alerts = await tb.api<{ items: { message: string }[] }>('GET', '/api/v1/alerts', tb.adminKey);
    const ready = await tb.api<{ upstreams?: Record<string, { credential?: { refused?: boolean } }> }>(
      'GET',
      '/readyz',
      tb.adminKey,
    );
    assert.deepEqual(
      {
        status: r.status,
        backupAsked: backup.hits.length,
        alerted: alerts.body.items.some((a) => /bedrock/.test(a.message)),
        refused: ready.body.upstreams?.bedrock?.credential?.refused === true,
      },
      { status: 200, backupAsked: 1, alerted: true, refused: true },
      r.text,
    );
  });
});
