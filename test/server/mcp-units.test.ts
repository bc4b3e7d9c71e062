import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CredentialCipher } from '../../server/mcp/cipher';
import type { McpConnection } from '../../server/mcp/connection';
import { injectedName, McpConfigError, normalise, TOOL_PREFIX, toolAllowed } from '../../server/mcp/servers';
import { failureForMember, SHARED_CALL_FAILURE, ToolSession } from '../../server/mcp/session';
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

  it('filters in time linear in the name the server lists: `*` any run, everything else (`?` too) itself', () => {
    // What the patterns meant as anchored regular expressions, kept; only the time changed.
    const asRegExp = (g: string): RegExp =>
      new RegExp(`^${g.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 's');
    for (const [pattern, name, want] of [
      ['get-*', 'get-sum', true],
      ['*_delete', 'repo_delete', true],
      ['*_*delete*', 'a_b_delete_c', true],
      ['get?', 'gets', false],
      ['get?', 'get?', true],
      ['a*b*c', 'abc', true],
      ['a*b*c', 'acb', false],
      ['*', 'line\nbreak', true],
    ] as const) {
      assert.equal(toolAllowed(name, { allow: [pattern], deny: [] }), want, `${pattern} on ${name}`);
      assert.equal(
        asRegExp(pattern).test(name),
        want,
        `the regular expression agrees: ${pattern} on ${name}`,
      );
    }
    // As a regular expression on V8's backtracking engine, 10,000 characters of this took 44 s; here a million.
    const long = 'a_'.repeat(512 * 1024);
    const started = performance.now();
    assert.equal(toolAllowed(long, { allow: ['*'], deny: ['*_*_*delete*'] }), true);
    assert.equal(toolAllowed(long, { allow: ['a*_*b*'], deny: [] }), false);
    assert.ok(performance.now() - started < 500, `${Math.round(performance.now() - started)} ms`);
  });

  it('validates server definitions', () => {
    const http = { transport: { type: 'http' as const, url: 'http://127.0.0.1:1/mcp' } };
    assert.throws(() => normalise('Bad_Name', http, 'api', null), McpConfigError);
    assert.throws(() => normalise('a__b', http, 'api', null), McpConfigError);
    assert.throws(
      () => normalise('s', { transport: { type: 'http', url: 'ftp://x' } }, 'api', null),
      /http\(s\)/,
    );
    // A password in the URL: fetch refuses it on every call, and its errors repeated it in the log.
    assert.throws(
      () =>
        normalise(
          's',
          { transport: { type: 'http', url: 'http://svc:SuperSecretPw@127.0.0.1:1/mcp' } },
          'api',
          null,
        ),
      (err: Error) => /user name or password/.test(err.message) && !err.message.includes('SuperSecretPw'),
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

  it("tells admins a shared server's real failure and the member only that it failed; a per-user connection's reason is the member's", async () => {
    const http = { transport: { type: 'http' as const, url: 'http://127.0.0.1:1/mcp' } };
    const shared = normalise('docs', http, 'api', null);
    const own = normalise('mine', { ...http, auth: { type: 'per_user' } }, 'api', null);
    const warned: string[] = [];
    const warn = (server: string, message: string): void => {
      warned.push(`${server}: ${message}`);
    };
    assert.equal(failureForMember(shared, 'a read of x', 'ECONNREFUSED 10.1.2.3', warn), SHARED_CALL_FAILURE);
    assert.deepEqual(warned, ['docs: a read of x failed: ECONNREFUSED 10.1.2.3']);
    assert.equal(failureForMember(own, 'a call of y', 'token expired', warn), 'token expired');
    assert.equal(warned.length, 1, "a member's own connection warns no admin");

    // Injection (ToolSession.run) follows the same rule. A stub connection: only `server` and
    // `call` are read on this path, and a real one would need a live server to fail.
    const connection = {
      server: shared,
      call: async () => {
        throw new Error('502 Bad Gateway from http://10.1.2.3/internal');
      },
    } as unknown as McpConnection;
    const session = new ToolSession(
      [
        {
          offered: { name: 'mcp__docs__search', description: 'search', inputSchema: { type: 'object' } },
          tool: { name: 'search', inputSchema: { type: 'object' } },
          server: 'docs',
          connection,
          timeoutMs: 1000,
        },
      ],
      10_000,
      warn,
    );
    const run = await session.run(
      { id: 'c1', name: 'mcp__docs__search', input: {} },
      new AbortController().signal,
    );
    assert.equal(run.text, `The tool failed: ${SHARED_CALL_FAILURE}`);
    assert.equal(run.execution.error, SHARED_CALL_FAILURE);
    assert.equal(warned[1], 'docs: a call of search failed: 502 Bad Gateway from http://10.1.2.3/internal');
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
