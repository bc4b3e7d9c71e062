import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CredentialCipher } from '../../server/mcp/cipher';
import { injectedName, McpConfigError, normalise, TOOL_PREFIX, toolAllowed } from '../../server/mcp/servers';
import { addUsage } from '../../server/providers/injection';

describe('MCP building blocks', () => {
  it('seals credentials with AES-256-GCM bound to their slot', () => {
    const key = randomBytes(32).toString('base64');
    const c = new CredentialCipher(key);
    const sealed = c.seal('tok-123', 'mcp_credential:gh:u1');
    assert.ok(!sealed.includes('tok-123'));
    assert.notEqual(sealed, c.seal('tok-123', 'mcp_credential:gh:u1'), 'a fresh nonce each time');
    assert.equal(c.open(sealed, 'mcp_credential:gh:u1'), 'tok-123');
    assert.throws(() => c.open(sealed, 'mcp_credential:gh:u2'), 'another user slot');
    const parts = sealed.split('.');
    parts[3] = Buffer.from('tampered').toString('base64');
    assert.throws(() => c.open(parts.join('.'), 'mcp_credential:gh:u1'));
    assert.throws(() => new CredentialCipher(randomBytes(16).toString('base64')));
    assert.throws(() =>
      new CredentialCipher(randomBytes(32).toString('base64')).open(sealed, 'mcp_credential:gh:u1'),
    );
  });

  it('names injected tools under the prefix, within 64 characters, without collisions', () => {
    assert.equal(injectedName('gh', 'search-issues', new Set()), `${TOOL_PREFIX}gh__search-issues`);
    assert.equal(injectedName('gh', 'a.b c', new Set()), `${TOOL_PREFIX}gh__a_b_c`);
    const long = injectedName('gh', 'x'.repeat(100), new Set());
    assert.equal(long.length, 64);
    assert.ok(long.startsWith(TOOL_PREFIX));
    const taken = new Set([`${TOOL_PREFIX}gh__a_b`]);
    const other = injectedName('gh', 'a.b', taken);
    assert.ok(!taken.has(other) && other.startsWith(TOOL_PREFIX));
  });

  it('filters tools by allow and deny patterns', () => {
    const f = { allow: ['get-*', 'echo'], deny: ['get-env'] };
    assert.equal(toolAllowed('get-sum', f), true);
    assert.equal(toolAllowed('get-env', f), false);
    assert.equal(toolAllowed('echo', f), true);
    assert.equal(toolAllowed('echoes', f), false);
  });

  it('validates server definitions', () => {
    const http = { transport: { type: 'http' as const, url: 'http://127.0.0.1:1/mcp' } };
    assert.throws(() => normalise('Bad_Name', http, 'api', null), McpConfigError);
    assert.throws(() => normalise('a__b', http, 'api', null), McpConfigError);
    assert.throws(
      () => normalise('s', { transport: { type: 'http', url: 'ftp://x' } }, 'api', null),
      /http\(s\)/,
    );
    assert.throws(
      () =>
        normalise(
          's',
          { transport: { type: 'stdio', command: 'x' }, auth: { type: 'per_user' } },
          'file',
          null,
        ),
      /auth.env/,
    );
    assert.throws(
      () => normalise('s', { ...http, auth: { type: 'secret', value: 'v' } }, 'api', null),
      /key/,
    );
    const ok = normalise(
      's',
      { ...http, auth: { type: 'secret', value: 'v' } },
      'api',
      (v) => `sealed(${v})`,
    );
    assert.equal(ok.auth.sealedSecret, 'sealed(v)');
    assert.equal(ok.auth.header, 'authorization');
    assert.deepEqual(ok.tools, { allow: ['*'], deny: [] });
  });

  it('adds provider usage field by field', () => {
    assert.deepEqual(
      addUsage(
        { input_tokens: 1, output_tokens: 2, service_tier: 'standard', details: { cached: 1 } },
        { input_tokens: 10, output_tokens: 20, service_tier: 'standard', details: { cached: 2 }, extra: 3 },
      ),
      { input_tokens: 11, output_tokens: 22, service_tier: 'standard', details: { cached: 3 }, extra: 3 },
    );
    assert.deepEqual(addUsage(null, { a: 1 }), { a: 1 });
  });
});
