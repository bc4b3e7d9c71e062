import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import pg from 'pg';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { AuthGate, EVERYTHING, startEverythingHttp } from '../helpers/mcp-servers';
import { testPostgres } from '../helpers/postgres';
import { ToolModelMock } from '../helpers/tool-model-mock';

const KEY = randomBytes(32).toString('base64');

/** Every byte of every file under `dir`. */
async function everyByte(dir: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) parts.push(await fs.readFile(path.join(e.parentPath, e.name)));
  }
  return Buffer.concat(parts);
}

/** Every row of every table, as text. */
async function everyRow(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const tables = await c.query<{ tablename: string }>(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`,
    );
    let all = '';
    for (const t of tables.rows)
      all += JSON.stringify((await c.query(`SELECT * FROM "${t.tablename}"`)).rows);
    return all;
  } finally {
    await c.end();
  }
}

describe('MCP server header and env values at rest', function () {
  this.timeout(90_000);
  let everything: { url: string; stop(): Promise<void> };
  let gate: AuthGate;
  let mock: ToolModelMock;

  before(async () => {
    everything = await startEverythingHttp();
    gate = await new AuthGate(everything.url).start();
    mock = await new ToolModelMock().start();
  });
  after(async () => {
    await mock.stop();
    await gate.stop();
    await everything.stop();
  });

  const env = (more: Record<string, string> = {}): Record<string, string> => ({
    AIBRIDGE_MCP_CREDENTIALS_KEY: KEY,
    AIBRIDGE_MCP_API_STDIO: 'true',
    // The tool's answer is conversation, which the audit keeps by its own rules: not what this checks.
    AIBRIDGE_AUDIT_CAPTURE: 'none',
    ...more,
  });

  /** Defines an HTTP server behind the gate (by header) and a stdio one (by env), and uses both. */
  async function plantAndUse(tb: TestBridge): Promise<{ header: string; envValue: string }> {
    const header = `hdr-secret-${randomBytes(8).toString('hex')}`;
    const envValue = `env-secret-${randomBytes(8).toString('hex')}`;
    gate.tokens.add(header);
    const gated = await tb.api<{ transport: { headers: Record<string, string> }; status: { state: string } }>(
      'PUT',
      '/api/v1/mcp/servers/gated',
      tb.adminKey,
      {
        transport: { type: 'http', url: gate.url, headers: { authorization: `Bearer ${header}` } },
        tools: { allow: ['get-sum'] },
      },
    );
    assert.equal(gated.status, 200, JSON.stringify(gated.body));
    assert.equal(gated.body.status.state, 'ready', 'the server received the header and let the bridge in');
    assert.deepEqual(gated.body.transport.headers, { authorization: '***' });
    const stdio = await tb.api<{ transport: { env: Record<string, string> }; status: { state: string } }>(
      'PUT',
      '/api/v1/mcp/servers/envy',
      tb.adminKey,
      {
        transport: {
          type: 'stdio',
          command: process.execPath,
          args: [EVERYTHING, 'stdio'],
          env: { AIBRIDGE_TEST_PLANTED: envValue },
        },
        tools: { allow: ['get-env'] },
      },
    );
    assert.equal(stdio.status, 200, JSON.stringify(stdio.body));
    assert.deepEqual(stdio.body.transport.env, { AIBRIDGE_TEST_PLANTED: '***' });
    for (const route of ['/api/v1/mcp/servers', '/api/v1/mcp/servers/gated', '/api/v1/mcp/servers/envy']) {
      const text = JSON.stringify((await tb.api('GET', route, tb.adminKey)).body);
      assert.ok(!text.includes(header) && !text.includes(envValue), `${route} shows no value`);
    }

    // The stdio server got its env: its get-env tool reports the planted value to the model.
    mock.brain = (v) =>
      v.results.length > 0
        ? { text: v.results[0]!.text.includes(envValue) ? 'planted value present' : 'planted value missing' }
        : { calls: [{ name: 'aibridge__envy__get-env', input: {} }] };
    const client = new Anthropic({ apiKey: tb.adminKey, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
    const msg = await client.messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'what is in your environment?' }],
    });
    assert.equal((msg.content[0] as { text: string }).text, 'planted value present');
    return { header, envValue };
  }

  it('seals them in the data dir; the API shows names only; the servers still receive them', async () => {
    const dir = await tempDir();
    const tb = await startBridge(mock.url, env(), dir);
    let planted: { header: string; envValue: string };
    try {
      planted = await plantAndUse(tb);
    } finally {
      await tb.close();
    }
    const bytes = await everyByte(dir);
    assert.ok(!bytes.includes(planted.header), 'the header value is nowhere in the data dir');
    assert.ok(!bytes.includes(planted.envValue), 'the env value is nowhere in the data dir');

    // A restart opens them again.
    const again = await startBridge(mock.url, env(), dir);
    try {
      await again.bridge.mcp.ready();
      const view = await again.api<{ status: { state: string } }>(
        'GET',
        '/api/v1/mcp/servers/gated',
        again.adminKey,
      );
      assert.equal(view.body.status.state, 'ready');
    } finally {
      await again.close();
    }
  });

  it('seals them in PostgreSQL too', async () => {
    const url = await (await testPostgres()).createDatabase('mcpsecrets');
    const tb = await startBridge(mock.url, env({ AIBRIDGE_DATABASE_URL: url }));
    let planted: { header: string; envValue: string };
    try {
      planted = await plantAndUse(tb);
    } finally {
      await tb.close();
    }
    const rows = await everyRow(url);
    assert.ok(rows.includes('gated') && rows.includes('envy'), 'the definitions are in the database');
    assert.ok(!rows.includes(planted.header), 'the header value is in no table');
    assert.ok(!rows.includes(planted.envValue), 'the env value is in no table');
  });

  it('without a credentials key, refuses header and env values (503 mcp_no_credentials_key)', async () => {
    const tb = await startBridge(mock.url, { AIBRIDGE_MCP_API_STDIO: 'true' });
    try {
      const refused = await tb.api<{ error: { code: string; message: string } }>(
        'PUT',
        '/api/v1/mcp/servers/gated',
        tb.adminKey,
        { transport: { type: 'http', url: gate.url, headers: { authorization: 'Bearer nope' } } },
      );
      assert.equal(refused.status, 503);
      assert.equal(refused.body.error.code, 'mcp_no_credentials_key');
      assert.match(refused.body.error.message, /AIBRIDGE_MCP_CREDENTIALS_KEY/);
      const envRefused = await tb.api<{ error: { code: string } }>(
        'PUT',
        '/api/v1/mcp/servers/envy',
        tb.adminKey,
        {
          transport: {
            type: 'stdio',
            command: process.execPath,
            args: [EVERYTHING, 'stdio'],
            env: { A: 'b' },
          },
        },
      );
      assert.equal(envRefused.body.error.code, 'mcp_no_credentials_key');
      assert.deepEqual(await tb.bridge.store.listDocs('mcp_server'), [], 'nothing was stored');
      const plain = await tb.api('PUT', '/api/v1/mcp/servers/open', tb.adminKey, {
        transport: { type: 'http', url: everything.url },
      });
      assert.equal(plain.status, 200, 'a server without values needs no key');
    } finally {
      await tb.close();
    }
  });

  it('a definition stored with plain values keeps working, and is sealed once a key is set', async () => {
    const dir = await tempDir();
    const header = `legacy-${randomBytes(8).toString('hex')}`;
    gate.tokens.add(header);
    // As an older bridge stored it: values in clear, no `transportSealed`.
    const store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    await store.putDoc('mcp_server', 'gated', {
      name: 'gated',
      description: '',
      enabled: true,
      transport: { type: 'http', url: gate.url, headers: { authorization: `Bearer ${header}` } },
      tools: { allow: ['*'], deny: [] },
      auth: {
        type: 'none',
        header: 'authorization',
        scheme: 'Bearer',
        env: null,
        fromEnv: null,
        sealedSecret: null,
        plainSecret: null,
        oauth: null,
      },
      timeoutMs: null,
      source: 'api',
      updatedAt: new Date().toISOString(),
    });
    await store.close();

    const state = async (tb: TestBridge): Promise<string> => {
      await tb.bridge.mcp.ready();
      return (await tb.api<{ status: { state: string } }>('GET', '/api/v1/mcp/servers/gated', tb.adminKey))
        .body.status.state;
    };
    const keyless = await startBridge(mock.url, {}, dir);
    try {
      assert.equal(await state(keyless), 'ready', 'read as it is without a key');
    } finally {
      await keyless.close();
    }
    assert.ok((await everyByte(dir)).includes(header), 'still plain: there was no key to seal it with');

    const keyed = await startBridge(mock.url, env(), dir);
    try {
      assert.equal(await state(keyed), 'ready');
    } finally {
      await keyed.close();
    }
    assert.ok(!(await everyByte(dir)).includes(header), 'sealed at the first start with a key');
  });
});
