import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig, trustWarnings } from '../../server/config';
import { writeProvidersFile } from '../helpers/providers-file';

describe('provider keys as configured', () => {
  it('lose the white space around them (a secret file’s newline), from the environment and the providers file', async () => {
    const file = await writeProvidersFile({
      corp: { type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', apiKey: ' sk-corp\n' },
      other: { type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', apiKey: { fromEnv: 'OTHER_KEY' } },
    });
    const config = loadConfig({ port: '0', 'data-dir': path.dirname(file) }, {
      AIBRIDGE_ANTHROPIC_API_KEY: 'sk-ant-x\n',
      AIBRIDGE_PROVIDERS_FILE: file,
      OTHER_KEY: 'sk-other\r\n',
      AIBRIDGE_LOG_LEVEL: 'silent',
    } as Record<string, string>);
    assert.equal(config.upstreams.anthropic?.apiKey, 'sk-ant-x');
    assert.equal(config.upstreams.corp?.apiKey, 'sk-corp');
    assert.equal(config.upstreams.other?.apiKey, 'sk-other');
  });
});

describe('trusted proxies as configured', () => {
  it('warn at start when they are every address, and not for a real range', () => {
    const warns = (v: string) =>
      trustWarnings(loadConfig({ port: '0' }, { AIBRIDGE_TRUSTED_PROXIES: v, AIBRIDGE_LOG_LEVEL: 'silent' }));
    assert.match(warns('0.0.0.0/0')[0] ?? '', /trusts every address \(0\.0\.0\.0\/0\)/);
    assert.match(warns('10.0.0.0/8, ::/0')[0] ?? '', /::\/0/);
    assert.deepEqual(warns('10.0.0.0/8'), []);
  });
});

describe('the metrics token as configured', () => {
  const load = (v: string) =>
    loadConfig({ port: '0' }, { AIBRIDGE_METRICS_TOKEN: v, AIBRIDGE_LOG_LEVEL: 'silent' });
  it('loses the newline a secret file leaves', () => {
    assert.equal(load('s3cret-metrics-token-0123456789\n').metricsToken, 's3cret-metrics-token-0123456789');
    assert.equal(load('  \n').metricsToken, undefined);
  });
  it('refuses white space or control characters inside, never echoing the token', () => {
    for (const v of ['two words-0123456789', 'tab\there-0123456789', 'nul\u0000x-0123456789'])
      assert.throws(
        () => load(v),
        (err: Error) =>
          /AIBRIDGE_METRICS_TOKEN: expected printable ASCII without spaces/.test(err.message) &&
          !err.message.includes('0123456789'),
      );
  });
  it('warns at start of a short one, not of a long one', () => {
    assert.match(trustWarnings(load('abc'))[0] ?? '', /AIBRIDGE_METRICS_TOKEN is shorter than 16 characters/);
    assert.deepEqual(trustWarnings(load('0123456789abcdef')), []);
  });
});
