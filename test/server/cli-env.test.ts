import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { envExports, readCredentials } from '../../server/cli/device-login';
import { tempDirSync } from '../helpers/temp-dirs';

/** `aibridge env` from a credentials file as `aibridge login` wrote it, or as a user edited it. */
describe('aibridge env: Gemini CLI’s variables', () => {
  const base = { url: 'https://bridge.example.com', key: 'aib_devicekey', keyId: 'k1', expiresAt: null };

  function envFrom(file: object, shell: 'posix' | 'fish' = 'posix'): Map<string, string> {
    const p = path.join(tempDirSync('aibridge-creds-'), 'credentials.json');
    fs.writeFileSync(p, JSON.stringify(file));
    const lines = envExports(readCredentials(p), shell);
    const re = shell === 'fish' ? /^set -gx (\w+) '([^']*)';$/ : /^export (\w+)='([^']*)'$/;
    return new Map(
      lines.map((l) => {
        const m = re.exec(l);
        assert.ok(m, `not an export line: ${l}`);
        return [m[1]!, m[2]!];
      }),
    );
  }

  it('the instance the bridge named at sign-in: base URL under it, the device key', () => {
    for (const shell of ['posix', 'fish'] as const) {
      const vars = envFrom({ ...base, gemini: 'vertex-gemini' }, shell);
      assert.equal(vars.get('GOOGLE_GEMINI_BASE_URL'), 'https://bridge.example.com/vertex-gemini');
      assert.equal(vars.get('GEMINI_API_KEY'), 'aib_devicekey');
      assert.equal(vars.get('ANTHROPIC_AUTH_TOKEN'), 'aib_devicekey');
    }
  });

  it('none when the bridge served no Gemini, when the file predates the answer, or names no instance', () => {
    for (const gemini of [null, undefined, '../api/v1/admin', 'Gemini', '', 42]) {
      const vars = envFrom(gemini === undefined ? base : { ...base, gemini });
      assert.equal(vars.has('GOOGLE_GEMINI_BASE_URL'), false, String(gemini));
      assert.equal(vars.has('GEMINI_API_KEY'), false, String(gemini));
      assert.equal(
        vars.get('ANTHROPIC_BASE_URL'),
        'https://bridge.example.com/anthropic',
        'the rest as before',
      );
    }
  });
});

describe('aibridge env: a credentials file that is not one', () => {
  it('says to sign in again, for JSON that is no object as for JSON without a key', () => {
    for (const text of ['null', '[]', '"x"', '{"url": "https://b.example"}']) {
      const p = path.join(tempDirSync('aibridge-creds-'), 'credentials.json');
      fs.writeFileSync(p, text);
      assert.throws(
        () => readCredentials(p),
        /not an aibridge credentials file; run `aibridge login` again/,
        text,
      );
    }
  });
});
