import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { periodEnd } from '../../server/spend/periods';
import { periodly } from '../../shared/spend';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { GEMINI_UPSTREAM_KEY, type GeminiMock, startGeminiMock } from '../helpers/gemini-mock';
import { testPostgres } from '../helpers/postgres';
import { run } from '../helpers/run';

/** The real Gemini CLI's entry point, run with this node so the test does not depend on `PATH`. */
const GEMINI = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@google/gemini-cli/package.json')),
  'bundle',
  'gemini.js',
);

describe('the real Gemini CLI through /gemini', function () {
  this.timeout(120_000);
  let mock: GeminiMock;
  let tb: TestBridge;
  /** The same bridge on the PostgreSQL store, started by the test that needs it. */
  let pgTb: TestBridge | undefined;

  before(async () => {
    mock = await startGeminiMock();
    tb = await startBridge('http://127.0.0.1:9', {
      AIBRIDGE_GEMINI_BASE_URL: mock.origin,
      AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
    });
  });

  /** `aibridge login` still polling when a test failed or timed out before the approval. */
  const logins = new Set<ChildProcess>();
  afterEach(() => {
    for (const p of logins) p.kill();
    logins.clear();
  });

  after(async () => {
    await tb?.close();
    await pgTb?.close();
    await mock?.stop();
  });

  /** A fresh HOME (and workspace) for the CLI, and its environment against `bridge` with `key`. */
  async function cliHome(key: string, bridge = tb): Promise<{ home: string; env: NodeJS.ProcessEnv }> {
    const home = await tempDir('aibridge-gemini-home-');
    // Gemini CLI 0.61 takes GOOGLE_GEMINI_BASE_URL alone for its "gateway" auth type, which `-p`
    // refuses ("Invalid auth method selected."); the API-key type, chosen in its settings, sends the
    // key and honours the base URL.
    await fs.mkdir(path.join(home, '.gemini'), { recursive: true });
    await fs.writeFile(
      path.join(home, '.gemini', 'settings.json'),
      JSON.stringify({ security: { auth: { selectedType: 'gemini-api-key' } } }),
    );
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: home,
      GOOGLE_GEMINI_BASE_URL: `${bridge.url}/gemini`,
      GEMINI_API_KEY: key,
      // A fresh HOME has no trusted folders; headless runs say so by this variable.
      GEMINI_CLI_TRUST_WORKSPACE: 'true',
      CI: '1',
      NO_COLOR: '1',
    };
    return { home, env };
  }

  it('gemini -p with GOOGLE_GEMINI_BASE_URL=<bridge>/gemini prints the answer, recorded as gemini-cli', async () => {
    const dev = await tb.addUser('gemini-cli@example.com');
    const { home, env } = await cliHome(dev.key);
    // A named model skips the CLI's routing call (a classifier on a flash-lite model) before the turn.
    const res = await run(process.execPath, [GEMINI, '-p', 'Say hello', '-m', 'gemini-2.5-flash'], env, home);
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    // The mock streams "Bon", then a last chunk "Bonjour"; the CLI prints the chunks as they come.
    assert.equal(res.stdout.trim(), 'BonBonjour');
    assert.equal(mock.seen.length, 1, mock.seen.map((s) => s.url).join(', '));
    const seen = mock.seen[0]!;
    assert.equal(seen.url, '/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse');
    assert.equal(seen.headers['x-goog-api-key'], GEMINI_UPSTREAM_KEY, 'the organisation’s key upstream');
    assert.match(String(seen.headers['user-agent']), /^GeminiCLI-tui\/\d/);
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.client, 'gemini-cli');
    assert.equal(rec.provider, 'gemini');
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.equal(rec.streamed, true);
    assert.equal(rec.status, 'ok');
    assert.equal(rec.prompt, 'Say hello', 'the <session_context> the CLI prepends is not the typed prompt');
    // promptTokenCount 1200 − cached 1000 + tool-use prompt 7; candidates 35 + thoughts 12.
    assert.deepEqual(
      {
        input: rec.usage.input,
        cacheRead: rec.usage.cacheRead,
        output: rec.usage.output,
        reasoning: rec.usage.reasoning,
      },
      { input: 207, cacheRead: 1000, output: 47, reasoning: 12 },
    );
  });

  it('a plain shell: aibridge login, then eval "$(aibridge env)" sends Gemini CLI through the bridge with the device key', async () => {
    const dev = await tb.addUser('gemini-shell@example.com');
    const home = await tempDir('aibridge-gemini-shell-');
    const shellEnv = { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: path.join(home, 'xdg') };
    const login = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts', 'login', '--url', tb.url], {
      env: shellEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    logins.add(login);
    let said = '';
    login.stdout.on('data', (d: Buffer) => {
      said += d.toString();
    });
    login.stderr.on('data', (d: Buffer) => {
      said += d.toString();
    });
    const exited = new Promise<number>((resolve) => login.on('exit', (code) => resolve(code ?? -1)));
    let code: string | undefined;
    for (const deadline = Date.now() + 15_000; !code && Date.now() < deadline; ) {
      code = /confirm the code ([A-Z]{4}-[A-Z]{4})/.exec(said)?.[1];
      if (!code) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(code, `no code printed: ${said}`);
    const approved = await tb.api('POST', '/api/v1/auth/device/approve', dev.key, {
      userCode: code,
      approve: true,
    });
    assert.equal(approved.status, 200);
    assert.equal(await exited, 0, said);
    assert.match(
      said,
      new RegExp(`Gemini CLI too \\(${tb.url}/gemini\\)`),
      'the sign-in says how Gemini CLI takes the key',
    );

    const env = await run(
      process.execPath,
      ['--import', 'tsx', 'server/main.ts', 'env'],
      shellEnv,
      process.cwd(),
    );
    assert.equal(env.code, 0, env.stderr);
    const vars = Object.fromEntries(
      [...env.stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.equal(vars.GOOGLE_GEMINI_BASE_URL, `${tb.url}/gemini`);
    assert.equal(vars.GEMINI_API_KEY, vars.ANTHROPIC_AUTH_TOKEN, 'the device key, as for the other agents');
    assert.notEqual(vars.GEMINI_API_KEY, dev.key, 'the key this sign-in made, not the one that approved it');

    await fs.mkdir(path.join(home, '.gemini'), { recursive: true });
    await fs.writeFile(
      path.join(home, '.gemini', 'settings.json'),
      JSON.stringify({ security: { auth: { selectedType: 'gemini-api-key' } } }),
    );
    const seenBefore = mock.seen.length;
    const res = await run(
      process.execPath,
      [GEMINI, '-p', 'Say hello', '-m', 'gemini-2.5-flash'],
      { ...shellEnv, ...vars, TMPDIR: home, GEMINI_CLI_TRUST_WORKSPACE: 'true', CI: '1', NO_COLOR: '1' },
      home,
    );
    assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
    assert.equal(res.stdout.trim(), 'BonBonjour');
    assert.equal(mock.seen.length, seenBefore + 1);
    const [rec] = await tb.interceptions(1, dev.key);
    assert.ok(rec);
    assert.equal(rec.userEmail, 'gemini-shell@example.com');
    assert.equal(rec.client, 'gemini-cli');
    assert.equal(rec.provider, 'gemini');
  });

  it('stops at once with the budget’s message when the budget is spent (RetryInfo: it ignores retry-after)', async () => {
    const dev = await tb.addUser('gemini-budget@example.com');
    const { home, env } = await cliHome(dev.key);
    const first = await run(
      process.execPath,
      [GEMINI, '-p', 'Spend a little', '-m', 'gemini-2.5-flash'],
      env,
      home,
    );
    assert.equal(first.code, 0, first.stderr);
    // A period whose reset is not minutes away: RetryInfo then says to wait that little, and Gemini
    // CLI rightly waits and tries again (the test failed when run just before midnight UTC).
    const now = new Date();
    const period = (['day', 'week', 'month'] as const).find(
      (p) => periodEnd(p, now).getTime() - now.getTime() > 30 * 60_000,
    )!;
    const put = await tb.api('PUT', '/api/v1/budgets', tb.adminKey, {
      scope: 'user',
      subject: 'gemini-budget@example.com',
      period,
      limitUsd: 0.000001,
      action: 'block',
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const started = Date.now();
    const res = await run(
      process.execPath,
      [GEMINI, '-p', 'Spend more', '-m', 'gemini-2.5-flash'],
      env,
      home,
      90_000,
    );
    const seconds = (Date.now() - started) / 1000;
    assert.notEqual(res.code, 0, res.stdout);
    assert.ok(seconds < 30, `gemini gave up after ${seconds.toFixed(1)} s (it retried for minutes)`);
    assert.match(
      `${res.stdout}\n${res.stderr}`,
      new RegExp(`${periodly(period)} budget of \\$0\\.000001 .* is spent`),
      `the budget’s own message: ${res.stdout}\n${res.stderr}`,
    );
  });

  for (const store of ['embedded', 'PostgreSQL'] as const)
    it(`links each result the CLI sends back to the call the model made, though the CLI names the calls itself (${store} store)`, async () => {
      if (store === 'PostgreSQL')
        pgTb ??= await startBridge('http://127.0.0.1:9', {
          AIBRIDGE_GEMINI_BASE_URL: mock.origin,
          AIBRIDGE_GEMINI_API_KEY: GEMINI_UPSTREAM_KEY,
          AIBRIDGE_DATABASE_URL: await (await testPostgres()).createDatabase('gemini_cli_links'),
        });
      const bridge = store === 'PostgreSQL' ? pgTb! : tb;
      const dev = await bridge.addUser('gemini-cli-tools@example.com');
      const { home, env } = await cliHome(dev.key, bridge);
      const sent = mock.seen.length;
      // The mock answers two `list_directory` calls without ids, as generateContent does; the CLI runs
      // them (the second fails: no such folder) and sends both results on its next request.
      const res = await run(
        process.execPath,
        [GEMINI, '-p', 'List LIST:.,no-such-dir', '-m', 'gemini-2.5-flash'],
        env,
        home,
      );
      assert.equal(res.code, 0, `gemini failed: ${res.stderr}\n${res.stdout}`);
      assert.match(res.stdout, /Done\./);
      assert.equal(mock.seen.length, sent + 2, mock.seen.map((s) => s.url).join(', '));
      // The CLI names each call by an id it makes up, on its result and on the call in its history.
      const contents = (
        mock.seen[sent + 1]!.body as { contents: { parts: Record<string, { id?: string }>[] }[] }
      ).contents;
      const resultIds = contents.at(-1)!.parts.map((p) => p.functionResponse?.id);
      const historyIds = contents.at(-2)!.parts.map((p) => p.functionCall?.id);
      assert.deepEqual(historyIds, resultIds);
      assert.ok(
        resultIds.every((id) => typeof id === 'string' && id !== 'list_directory'),
        String(resultIds),
      );

      const recs = await bridge.interceptions(2, dev.key);
      const calls = recs.find((r) => r.toolCalls.length > 0)!;
      const results = recs.find((r) => (r.toolResults ?? []).length > 0)!;
      assert.ok(calls && results && calls.id !== results.id);
      assert.deepEqual(
        calls.toolCalls.map((c) => [c.name, c.input, c.result?.interceptionId, c.result?.isError]),
        [
          ['list_directory', { dir_path: '.' }, results.id, false],
          ['list_directory', { dir_path: 'no-such-dir' }, results.id, true],
        ],
      );
      assert.deepEqual(
        results.toolResults?.map((r) => r.callId),
        calls.toolCalls.map((c) => c.id),
      );
      assert.notEqual(calls.toolCalls[0]!.id, calls.toolCalls[1]!.id);
    });
});
