import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { AnthropicMock, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { tempDir } from '../helpers/bridge';

const BIN = path.resolve('dist/aibridge.cjs');

interface Served {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
}

/** Starts the built binary the way an admin would, and waits for its listening line. */
async function serve(dataDir: string, env: Record<string, string>): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data-dir', dataDir], {
    env: { PATH: process.env.PATH, AIBRIDGE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c) => {
    err += c;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${out} ${err}`)), 15_000);
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out} ${err}`)));
  });
  return { child, url, stdout: () => out, stderr: () => err };
}

function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A streamed Messages turn through the bridge at `url`; the answer, unread. */
function streamTurn(url: string, key: string, prompt: string): Promise<Response> {
  return fetch(`${url}/anthropic/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'claude-sonnet-4-6',
      max_tokens: 5,
      stream: true,
      messages: [{ role: 'user', content: prompt }],
    }),
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('exit', (code) => resolve(code));
  });
}

describe('aibridge serve and the admin CLI', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(async () => {
    await mock.stop();
  });

  it('creates the admin once, serves, manages users and keys, and keeps records across a clean restart', async () => {
    const dataDir = await tempDir();
    const env = {
      AIBRIDGE_ANTHROPIC_BASE_URL: mock.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
      AIBRIDGE_ADMIN_EMAIL: 'root@example.com',
    };
    const first = await serve(dataDir, env);
    const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
    assert.match(adminKey, /^aib_[A-Za-z0-9_-]{43}$/);
    assert.ok(first.stdout().includes(adminKey), 'the admin key is printed once at first start');
    assert.equal((await fs.stat(path.join(dataDir, 'admin.key'))).mode & 0o777, 0o600);

    const common = ['--url', first.url, '--data-dir', dataDir];
    const created = await cli(['users', 'create', '--email', 'dev@example.com', '--team', 'core', ...common]);
    assert.equal(created.code, 0, created.stderr);
    assert.equal(JSON.parse(created.stdout).team, 'core');
    const dup = await cli(['users', 'create', '--email', 'dev@example.com', ...common]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /user_exists/);
    const moved = await cli(['users', 'update', '--email', 'dev@example.com', '--team', 'infra', ...common]);
    assert.equal(moved.code, 0, moved.stderr);
    assert.deepEqual(
      [JSON.parse(moved.stdout).team, JSON.parse(moved.stdout).role],
      ['infra', 'member'],
      'only the flags given change',
    );
    const missing = await cli(['keys', 'create', '--email', 'ghost@example.com', ...common]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /user_not_found/);
    const nothing = await cli(['users', 'update', '--email', 'dev@example.com', ...common]);
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /changes nothing without --name, --team or --role/);
    // A bridge that does not answer is no refusal (2) but a failure a script may wait out (1).
    const dead = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    const unreachable = await cli(['users', 'list', '--url', `http://127.0.0.1:${dead}`, '--admin-key', 'x']);
    assert.equal(unreachable.code, 1, unreachable.stderr);
    assert.match(
      unreachable.stderr,
      /^aibridge: cannot reach the bridge at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    );
    // A date alone is ISO 8601 too: that day's start, UTC.
    const dated = await cli([
      'keys',
      'create',
      '--email',
      'dev@example.com',
      '--expires-at',
      '2999-01-01',
      ...common,
    ]);
    assert.equal(dated.code, 0, dated.stderr);
    assert.match(dated.stderr, /expires 2999-01-01T00:00:00/);

    const issued = await cli(['keys', 'create', '--email', 'dev@example.com', '--url', first.url], {
      AIBRIDGE_ADMIN_KEY: adminKey,
    });
    assert.equal(issued.code, 0, issued.stderr);
    const devKey = issued.stdout.trim().split('\n').at(-1)!;
    assert.match(devKey, /^aib_/);

    const res = await streamTurn(first.url, devKey, 'persist me');
    assert.equal(res.status, 200);
    await res.text();
    const keyId = (await (
      await fetch(`${first.url}/api/v1/me`, { headers: { authorization: `Bearer ${devKey}` } })
    ).json()) as {
      key: { id: string };
    };

    first.child.kill('SIGTERM');
    assert.equal(await exited(first.child), 0);
    // Nothing secret on disk but the admin key file: keys are stored hashed.
    const db = await fs.readFile(path.join(dataDir, 'db.json'), 'utf8');
    assert.ok(!db.includes(devKey) && !db.includes(adminKey));

    const second = await serve(dataDir, env);
    try {
      assert.ok(!second.stdout().includes('aib_'), 'no new admin key on a second start');
      const list = (await (
        await fetch(`${second.url}/api/v1/interceptions`, {
          headers: { authorization: `Bearer ${adminKey}` },
        })
      ).json()) as {
        items: { prompt: string; userEmail: string; usage: { input: number } }[];
      };
      assert.equal(list.items.length, 1);
      assert.equal(list.items[0]!.prompt, 'persist me');
      assert.equal(list.items[0]!.userEmail, 'dev@example.com');
      assert.equal(list.items[0]!.usage.input, 25);

      const revoked = await cli(['keys', 'revoke', keyId.key.id, '--url', second.url, '--data-dir', dataDir]);
      assert.equal(revoked.code, 0, revoked.stderr);
      // Which key is which device's: the name is the last column, its control characters made harmless.
      const named = await cli([
        'keys',
        'create',
        '--email',
        'dev@example.com',
        '--name',
        'build box\t\x1b[2J',
        '--url',
        second.url,
        '--data-dir',
        dataDir,
      ]);
      assert.equal(named.code, 0, named.stderr);
      /** The admin CLI against the second bridge; `keys list` as rows of its columns. */
      const admin = (...args: string[]) => cli([...args, '--url', second.url, '--data-dir', dataDir]);
      const keyRows = async () => {
        const out = await admin('keys', 'list', '--email', 'dev@example.com');
        assert.equal(out.code, 0, out.stderr);
        return out.stdout
          .trim()
          .split('\n')
          .map((l) => l.split('\t'));
      };
      const rows = await keyRows();
      assert.ok(
        rows.every((r) => r.length === 5),
        JSON.stringify(rows),
      );
      const row = (id: string) => rows.find((r) => r[0] === id)!;
      assert.equal(row(keyId.key.id)[2], 'revoked');
      assert.equal(row(keyId.key.id)[4], '-');
      assert.ok(
        rows.some((r) => r[2] === 'active' && r[4] === 'build box\uFFFD\uFFFD[2J'),
        JSON.stringify(rows),
      );
      // Several ids at once (`keys revoke $(keys list … | cut -f1)`): every one is revoked.
      assert.equal((await admin('keys', 'create', '--email', 'dev@example.com')).code, 0);
      const active = (await keyRows()).filter((r) => r[2] === 'active').map((r) => r[0]!);
      assert.ok(active.length >= 2, active.join());
      const all = await admin('keys', 'revoke', ...active);
      assert.equal(all.code, 0, all.stderr);
      assert.equal(all.stdout.trim().split('\n').length, active.length, all.stdout);
      const now = await keyRows();
      for (const id of active) assert.equal(now.find((r) => r[0] === id)?.[2], 'revoked', id);
      const after = await fetch(`${second.url}/api/v1/me`, {
        headers: { authorization: `Bearer ${devKey}` },
      });
      assert.equal(after.status, 401);
    } finally {
      second.child.kill('SIGTERM');
      await exited(second.child);
    }
  });

  for (const signal of ['SIGTERM', 'SIGHUP'] as const)
    it(`on ${signal} lets an open stream finish, flushes its record and exits 0`, async () => {
      const dataDir = await tempDir();
      const env = { AIBRIDGE_ANTHROPIC_BASE_URL: mock.url, AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY };
      const first = await serve(dataDir, env);
      const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
      mock.next({ kind: 'drip', count: 20, delayMs: 40 });
      const res = await streamTurn(first.url, adminKey, 'drain me');
      const reader = res.body!.getReader();
      let text = new TextDecoder().decode((await reader.read()).value);
      first.child.kill(signal);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      assert.ok(text.includes('"19 "'), 'the whole stream arrived');
      assert.ok(text.includes('message_stop'));
      assert.equal(await exited(first.child), 0);

      const second = await serve(dataDir, env);
      try {
        const list = (await (
          await fetch(`${second.url}/api/v1/interceptions`, {
            headers: { authorization: `Bearer ${adminKey}` },
          })
        ).json()) as { items: { prompt: string; status: string; usage: { output: number } }[] };
        assert.equal(list.items.length, 1);
        assert.equal(list.items[0]!.prompt, 'drain me');
        assert.equal(list.items[0]!.status, 'ok');
        assert.equal(list.items[0]!.usage.output, 12);
      } finally {
        second.child.kill('SIGTERM');
        await exited(second.child);
      }
    });

  it('warns at start of base URLs that are valid but mistaken (/v1 on Anthropic, none on OpenAI, a version on Gemini)', async () => {
    const served = await serve(await tempDir(), {
      AIBRIDGE_ANTHROPIC_BASE_URL: 'http://127.0.0.1:9/v1',
      AIBRIDGE_OPENAI_BASE_URL: 'http://127.0.0.1:9',
      AIBRIDGE_GEMINI_BASE_URL: 'http://127.0.0.1:9/v1beta/',
    });
    try {
      const logged = served.stdout() + served.stderr();
      assert.match(logged, /AIBRIDGE_ANTHROPIC_BASE_URL ends in \/v1/);
      assert.match(logged, /AIBRIDGE_OPENAI_BASE_URL has no path/);
      assert.match(logged, /AIBRIDGE_GEMINI_BASE_URL ends in an API version/);
      // Started without any provider key: the admin hears why every model request will fail.
      assert.match(logged, /No provider instance has a key or credential/);
    } finally {
      served.child.kill('SIGTERM');
      await exited(served.child);
    }
    const fine = await serve(await tempDir(), {
      AIBRIDGE_ANTHROPIC_BASE_URL: 'http://127.0.0.1:9',
      AIBRIDGE_OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
    });
    try {
      assert.doesNotMatch(fine.stdout() + fine.stderr(), /BASE_URL/);
    } finally {
      fine.child.kill('SIGTERM');
      await exited(fine.child);
    }
  });

  it('warns at start of an AIBRIDGE_ variable it does not read, naming the likely one; a keyless provider’s refusal names its setting', async () => {
    const dir = await tempDir();
    const providers = path.join(dir, 'providers.json');
    await fs.writeFile(
      providers,
      JSON.stringify({
        providers: {
          mine: { type: 'anthropic', baseUrl: mock.url, apiKey: { fromEnv: 'AIBRIDGE_MY_OWN_KEY' } },
        },
      }),
    );
    const served = await serve(dir, {
      AIBRIDGE_ANTHROPIC_APIKEY: UPSTREAM_KEY,
      AIBRIDGE_PROVIDERS_FILE: providers,
      AIBRIDGE_MY_OWN_KEY: 'sk-ant-mine',
    });
    try {
      const logged = served.stdout() + served.stderr();
      assert.match(
        logged,
        /AIBRIDGE_ANTHROPIC_APIKEY is not a setting the bridge reads and is ignored: did you mean AIBRIDGE_ANTHROPIC_API_KEY\?/,
      );
      assert.doesNotMatch(
        logged,
        /AIBRIDGE_MY_OWN_KEY is not/,
        'a variable the providers file names is the operator’s own',
      );
      assert.doesNotMatch(logged, /No provider instance has a key/, 'the file’s instance has one');
      assert.doesNotMatch(logged, /sk-ant-mine|sk-ant-api/, 'values are never logged');
      const key = (await fs.readFile(path.join(dir, 'admin.key'), 'utf8')).trim();
      const res = await askMessages(served.url, key, { max_tokens: 5 });
      assert.equal(res.status, 503);
      assert.match(res.body, /no upstream key for this provider: set AIBRIDGE_ANTHROPIC_API_KEY and restart/);
    } finally {
      served.child.kill('SIGTERM');
      await exited(served.child);
    }
  });

  it('refuses a flag the admin command does not take (exit 2, naming it) instead of dropping it', async () => {
    for (const [args, pattern] of [
      // The flag the export would have dropped: every team's records, not the one asked for.
      [
        ['audit', 'export', '--team', 'platform'],
        /audit export takes no --team \(it takes --format, --kind, --since, --until, --user\)/,
      ],
      [['users', 'list', '--email', 'dev@example.com'], /users list takes no --email\n/],
      [['keys', 'create', '--email', 'dev@example.com', '--role', 'admin'], /keys create takes no --role/],
      // An argument the command would have ignored.
      [['users', 'list', 'extra'], /users list takes no arguments \(got "extra"\)/],
    ] as const) {
      // No bridge and no admin key: the usage is refused before either is looked for.
      const r = await cli([...args, '--url', 'http://127.0.0.1:9']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
    }
  });

  it('exits non-zero naming the setting when the config is bad', async () => {
    for (const [args, env, pattern] of [
      [['serve', '--port', 'eighty'], {}, /--port/],
      [['serve'], { AIBRIDGE_PORT: '70000' }, /AIBRIDGE_PORT/],
      [['serve'], { AIBRIDGE_ANTHROPIC_BASE_URL: 'ftp://x' }, /AIBRIDGE_ANTHROPIC_BASE_URL/],
      [['serve'], { AIBRIDGE_LOG_LEVEL: 'loud' }, /AIBRIDGE_LOG_LEVEL/],
      [['serve', '--bogus'], {}, /bogus/],
      [['serve'], { AIBRIDGE_HOST: 'localhost:7410' }, /AIBRIDGE_HOST.*the port is --port/],
      // A URL's credentials, or a webhook's secret path, are not echoed.
      [['serve'], { AIBRIDGE_ANTHROPIC_BASE_URL: 'ftp://user:hunter2@corp-gw' }, /got a ftp: one/],
      [
        ['serve'],
        { AIBRIDGE_ALERT_WEBHOOK_URL: 'hooks.slack.com/services/T000/B000/SECRETPATH' },
        /AIBRIDGE_ALERT_WEBHOOK_URL/,
      ],
      // The CLI's own URL: a usage error, its password not echoed either.
      [
        ['users', 'list', '--url', 'http://admin:URLPASS@127.0.0.1:9'],
        {},
        /must not carry a user name or password/,
      ],
      [['users', 'list', '--url', '127.0.0.1:9'], {}, /must be the bridge's http\(s\) URL/],
    ] as const) {
      const r = await cli([...args], { ...env });
      assert.equal(r.code, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.doesNotMatch(r.stderr, /hunter2|SECRETPATH|URLPASS/);
    }
    // A providers file that is not JSON: where, not the text around it (a key, unquoted).
    const dir = await tempDir();
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(file, '{"providers": {"corp": {"type": "openai", "apiKey": sk-live-SUPERSECRET}}}');
    const bad = await cli(['serve'], { AIBRIDGE_PROVIDERS_FILE: file });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /AIBRIDGE_PROVIDERS_FILE: cannot read .* as JSON: it is not valid JSON/);
    assert.doesNotMatch(bad.stderr, /SUPERSECRET|sk-live/);
  });

  it('one bridge per data dir: a second serve and a store copy from it exit 2 naming the holder; a killed holder is taken over; a stopped one leaves no lock', async () => {
    const dataDir = await tempDir();
    const env = { AIBRIDGE_ANTHROPIC_BASE_URL: mock.url, AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY };
    const first = await serve(dataDir, env);
    try {
      const second = await cli(['serve', '--port', '0', '--data-dir', dataDir], env);
      assert.equal(second.code, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`in use by another bridge \\(pid ${first.child.pid} `));
      assert.doesNotMatch(second.stderr, /\n\s+at /, 'a message, not a stack trace');
      const copy = await cli(['store', 'copy', '--from', dataDir, '--to', 'postgres://127.0.0.1:9/none']);
      assert.equal(copy.code, 2, copy.stderr);
      assert.match(copy.stderr, /in use by another bridge/);
      // The first one goes on serving.
      assert.equal((await fetch(`${first.url}/healthz`)).status, 200);
    } finally {
      first.child.kill('SIGKILL');
      await exited(first.child);
    }
    // Its lock file stays behind; its process is gone, so the next bridge takes the dir over.
    await fs.access(path.join(dataDir, 'aibridge.lock'));
    const next = await serve(dataDir, env);
    next.child.kill('SIGTERM');
    assert.equal(await exited(next.child), 0);
    await assert.rejects(fs.access(path.join(dataDir, 'aibridge.lock')), /ENOENT/);
  });

  it('a start-up failure is one line an admin can act on, not a stack trace: a port in use, a damaged db.json', async () => {
    const env = { AIBRIDGE_ANTHROPIC_BASE_URL: mock.url, AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY };
    const first = await serve(await tempDir(), env);
    try {
      const port = new URL(first.url).port;
      const second = await cli(['serve', '--port', port, '--data-dir', await tempDir()], env);
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use .*--port`));
      assert.doesNotMatch(second.stderr, /\n\s+at /);
    } finally {
      first.child.kill('SIGTERM');
      await exited(first.child);
    }
    const damaged = await tempDir();
    await fs.writeFile(path.join(damaged, 'db.json'), '{"users": [');
    const r = await cli(['serve', '--port', '0', '--data-dir', damaged], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /db\.json is not valid JSON .*restore it from a backup/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
    // A host that does not resolve is refused before the store opens: nothing is made in the
    // data dir (no first admin, no journal), however long the store would have taken to open.
    for (const [args, extra, setting] of [
      [['--host', 'no-such-host.invalid'], {}, /check --host \(AIBRIDGE_HOST\)/],
      [
        ['--metrics-port', '0'],
        { AIBRIDGE_METRICS_HOST: 'metrics.no-such-host.invalid' },
        /check AIBRIDGE_METRICS_HOST/,
      ],
    ] as const) {
      const empty = await tempDir();
      const bad = await cli(['serve', '--port', '0', '--data-dir', empty, ...args], { ...env, ...extra });
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(
        bad.stderr,
        /no-such-host\.invalid does not resolve \((ENOTFOUND|no DNS server answered)\)/,
      );
      assert.match(bad.stderr, setting);
      assert.doesNotMatch(bad.stderr, /\n\s+at |created admin user/);
      assert.deepEqual(await fs.readdir(empty), []);
    }
  });

  it('audit export: a refusal reads as code and message; a reader that stops early (| head) ends it quietly with exit 0', async () => {
    const dataDir = await tempDir();
    const served = await serve(dataDir, {
      AIBRIDGE_ANTHROPIC_BASE_URL: mock.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
    });
    try {
      const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
      const common = ['--url', served.url, '--admin-key', adminKey];
      const bad = await cli(['audit', 'export', '--format', 'xml', ...common]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^aibridge: invalid_request: querystring\/format/);
      assert.doesNotMatch(bad.stderr, /\{"error"/);
      // Enough records for an export longer than one pipe buffer.
      for (let i = 0; i < 40; i++)
        assert.equal(
          (await askMessages(served.url, adminKey, { max_tokens: 5, prompt: 'x'.repeat(4000) })).status,
          200,
        );
      // `| head -c 100`: the reader takes a little, then closes its end.
      const child = spawn(process.execPath, [BIN, 'audit', 'export', ...common], {
        env: { PATH: process.env.PATH },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c) => {
        stderr += c;
      });
      child.stdout.once('data', () => child.stdout.destroy());
      assert.equal(await exited(child), 0, stderr);
      assert.equal(stderr, '');
    } finally {
      served.child.kill('SIGTERM');
      await exited(served.child);
    }
  });

  it('audit export: --since and --until take a date alone (ISO 8601), as that day’s start, UTC', async () => {
    const dataDir = await tempDir();
    const served = await serve(dataDir, {
      AIBRIDGE_ANTHROPIC_BASE_URL: mock.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
    });
    try {
      const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
      const common = ['--url', served.url, '--admin-key', adminKey];
      const r = await askMessages(served.url, adminKey, { max_tokens: 5 });
      assert.equal(r.status, 200);
      const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
      // The record is written after the response: wait until the export holds it.
      let lines: string[] = [];
      for (let i = 0; i < 50 && lines.length === 0; i++) {
        const out = await cli(['audit', 'export', '--since', day(0), '--until', day(1), ...common]);
        assert.equal(out.code, 0, out.stderr);
        lines = out.stdout.split('\n').filter(Boolean);
        if (lines.length === 0) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(lines.length, 1);
      const none = await cli(['audit', 'export', '--since', day(1), ...common]);
      assert.equal(none.code, 0, none.stderr);
      assert.equal(none.stdout, '');
    } finally {
      served.child.kill('SIGTERM');
      await exited(served.child);
    }
  });

  it('users list says which users the identity provider deactivated', async () => {
    const dataDir = await tempDir();
    const scimToken = 'scim-cli-token-0123456789abcdefghijklmnopqrstuvwxyz';
    const served = await serve(dataDir, {
      AIBRIDGE_ANTHROPIC_BASE_URL: mock.url,
      AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
      AIBRIDGE_SCIM_TOKEN: scimToken,
    });
    try {
      const adminKey = (await fs.readFile(path.join(dataDir, 'admin.key'), 'utf8')).trim();
      const common = ['--url', served.url, '--admin-key', adminKey];
      assert.equal((await cli(['users', 'create', '--email', 'kept@example.com', ...common])).code, 0);
      // Flags before the command are the command's, as git reads them.
      const first = await cli([...common, 'users', 'list']);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /kept@example\.com/);
      // An agent's base URL given for the bridge's: said so, not an http_404.
      const agentUrl = await cli([
        'users',
        'list',
        '--url',
        `${served.url}/anthropic`,
        '--admin-key',
        adminKey,
      ]);
      assert.equal(agentUrl.code, 2, 'a usage error');
      assert.match(
        agentUrl.stderr,
        /--url is the bridge's own URL \(http:\/\/127\.0\.0\.1:\d+\), not a provider route such as \/anthropic/,
      );
      const scim = { authorization: `Bearer ${scimToken}`, 'content-type': 'application/scim+json' };
      const created = await fetch(`${served.url}/scim/v2/Users`, {
        method: 'POST',
        headers: scim,
        body: JSON.stringify({ userName: 'gone@example.com', active: true }),
      });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      const off = await fetch(`${served.url}/scim/v2/Users/${id}`, {
        method: 'PATCH',
        headers: scim,
        body: JSON.stringify({
          schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
          Operations: [{ op: 'replace', path: 'active', value: false }],
        }),
      });
      assert.equal(off.status, 200);
      const list = await cli(['users', 'list', ...common]);
      assert.equal(list.code, 0, list.stderr);
      const line = (email: string) => list.stdout.split('\n').find((l) => l.includes(`\t${email}\t`))!;
      assert.match(
        line('gone@example.com'),
        /^usr_\w+\tgone@example\.com\tmember\t-\tdeactivated \d{4}-\d\d-\d\dT/,
      );
      assert.match(line('kept@example.com'), /^usr_\w+\tkept@example\.com\tmember\t-$/);
    } finally {
      served.child.kill('SIGTERM');
      await exited(served.child);
    }
  });

  it('usage: --help anywhere prints it with exit 0; a command word without its subcommand says which it takes, before looking for a bridge', async () => {
    for (const args of [['--help'], ['serve', '--help'], ['users', '--help'], ['audit', 'export', '-h']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage:\n {2}aibridge serve/);
    }
    // Each command line of the usage is docs/cli.md's, word for word.
    const doc = await fs.readFile('docs/cli.md', 'utf8');
    const lines = (await cli(['--help'])).stdout.split('\n').filter((l) => l.startsWith('  aibridge '));
    assert.ok(lines.length >= 10);
    assert.deepEqual(
      lines.map((l) => l.trim()).filter((l) => !doc.includes(`${l}\n`)),
      [],
      'usage lines docs/cli.md does not have',
    );
    const dir = await tempDir();
    for (const [args, said] of [
      [['users'], /users needs one of: create, update, list/],
      [['users', '--data-dir', dir], /users needs one of/],
      [['keys', 'frobnicate'], /unknown command: keys frobnicate/],
    ] as const) {
      const r = await cli([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, said);
      assert.doesNotMatch(r.stderr, /admin key/, 'no bridge or key is looked for');
    }
  });
});
