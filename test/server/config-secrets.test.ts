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
