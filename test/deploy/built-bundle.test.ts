import assert from 'node:assert/strict';
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import path from 'node:path';
import { tempDirSync } from '../helpers/temp-dirs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'dist/aibridge.cjs');

/**
 * The built bundle loads some packages only on first use (docs/performance.md, idle RSS), each
 * from a chunk of its own, and a CommonJS package reaches its importer differently there than it
 * does from sources. The suite's other tests run the server from sources; these run the bundle,
 * once through every path that loads such a package: Bedrock (the AWS credential chain, SigV4 and
 * the event-stream codec), Vertex (google-auth-library) and tracing (the OpenTelemetry SDK). The
 * launcher's start-up heap setting exists only in the bundle too.
 */
describe('the built bundle: what it loads on first use, and its start-up heap', function () {
  this.timeout(60_000);
  const children: ChildProcess[] = [];
  let dir: string;
  let url: string;
  let key: string;
  let admin: string;
  let sink: http.Server;
  const spans: string[] = [];

  const lineFrom = (child: ChildProcess, re: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      let out = '';
      const seen = (c: Buffer): void => {
        out += c;
        const m = re.exec(out);
        if (m) resolve(m[1]!);
      };
      child.stdout!.on('data', seen);
      child.stderr!.on('data', seen);
      child.once('exit', (code) => reject(new Error(`exited (${code}) before it was ready: ${out}`)));
    });

  before(async () => {
    dir = tempDirSync('aibridge-bundle-');
    const mock = fork(path.join(ROOT, 'bench/mock-upstream.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    children.push(mock);
    const mockUrl = await lineFrom(mock, /mock listening on (http:\/\/\S+)/);

    sink = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        spans.push(`${req.url} ${Buffer.concat(chunks).length}`);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sa = path.join(dir, 'sa.json');
    fs.writeFileSync(
      sa,
      JSON.stringify({
        type: 'service_account',
        project_id: 'bundle-project',
        private_key_id: 'k',
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        client_email: 'bridge@bundle-project.iam.gserviceaccount.com',
        token_uri: `${mockUrl}/token`,
      }),
      { mode: 0o600 },
    );
    const providers = path.join(dir, 'providers.json');
    fs.writeFileSync(
      providers,
      JSON.stringify({
        providers: {
          bedrock: { type: 'bedrock', region: 'us-east-1', baseUrl: mockUrl },
          vertex: {
            type: 'vertex-anthropic',
            project: 'bundle-project',
            region: 'us-east5',
            baseUrl: mockUrl,
            credentialsFile: sa,
          },
        },
      }),
    );
    const bridge = spawn(
      process.execPath,
      [BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data-dir', path.join(dir, 'data')],
      {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          AIBRIDGE_PROVIDERS_FILE: providers,
          AIBRIDGE_ANTHROPIC_BASE_URL: mockUrl,
          AIBRIDGE_ANTHROPIC_API_KEY: 'sk-ant-bundle-upstream',
          AIBRIDGE_LOG_LEVEL: 'warn',
          AWS_ACCESS_KEY_ID: 'AKIATESTBUNDLE000001',
          AWS_SECRET_ACCESS_KEY: 'testSecretAccessKeyForTheBuiltBundle0000',
          AWS_EC2_METADATA_DISABLED: 'true',
          OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(bridge);
    url = await lineFrom(bridge, /listening on (http:\/\/\S+)/);
    admin = fs.readFileSync(path.join(dir, 'data', 'admin.key'), 'utf8').trim();
    const post = async (p: string, body: unknown): Promise<{ key: string }> => {
      const res = await fetch(`${url}${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.ok(res.ok, `${p}: ${res.status} ${await res.clone().text()}`);
      return (await res.json()) as { key: string };
    };
    await post('/api/v1/users', { email: 'dev@bundle.test', team: 't' });
    key = (await post('/api/v1/users/dev%40bundle.test/keys', {})).key;
  });

  after(() => {
    for (const c of children) c.kill('SIGKILL');
    sink?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const messages = (prefix: string, stream: boolean): Promise<Response> =>
    fetch(`${url}/${prefix}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        stream,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });

  /** V8's young generation, from the bridge's own metrics. */
  const youngGenerationBytes = async (): Promise<number> => {
    const text = await (
      await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
    ).text();
    const m = /^aibridge_nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)/m.exec(text);
    assert.ok(m, 'the metrics report the young generation');
    return Number(m[1]);
  };
  let atRest = 0;

  it('a bridge at rest has a young generation start-up did not grow (server/start-up-heap.ts)', async () => {
    const first = await messages('anthropic', false);
    assert.equal(first.status, 200, await first.clone().text());
    atRest = await youngGenerationBytes();
    // V8 grows it to 16 MB during start-up if left to itself.
    assert.ok(atRest <= 4 * 1024 * 1024, `young generation at rest: ${atRest} bytes`);
  });

  it('MCP gateway: a burst of notification streams while the SDK first loads keeps the per-user cap', async () => {
    // The gateway loads the MCP SDK on its first request; GETs arriving meanwhile all passed the
    // cap of 16 before any was held (gateway-routes.ts counts those still opening). Forty sockets
    // are connected first, then all send at once, so the requests arrive together.
    const { hostname, port } = new URL(url);
    const sockets = await Promise.all(
      Array.from(
        { length: 40 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(Number(port), hostname, () => resolve(s));
            s.once('error', reject);
          }),
      ),
    );
    const got = sockets.map((s) => {
      let text = '';
      s.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      s.on('error', () => undefined);
      return () => text;
    });
    const head = `GET /mcp HTTP/1.1\r\nHost: bridge\r\nauthorization: Bearer ${key}\r\naccept: text/event-stream\r\n\r\n`;
    for (const s of sockets) s.write(head);
    await new Promise((r) => setTimeout(r, 3000));
    for (const s of sockets) s.destroy();
    // A refusal comes at once; a stream held open may send its head only with its first event.
    const refused = got.filter((t) => /^HTTP\/1\.1 429 /.test(t())).length;
    const other = got.map((t) => t().slice(0, 12)).filter((t) => !t.startsWith('HTTP/1.1 429'));
    assert.ok(
      other.every((t) => t === '' || t === 'HTTP/1.1 200'),
      other.join('|'),
    );
    assert.ok(refused >= 24, `refused ${refused} of 40: at most 16 streams may open`);
  });

  it('Bedrock: signs with the credential chain and re-frames the event stream as SSE', async () => {
    const json = await messages('bedrock', false);
    assert.equal(json.status, 200, await json.clone().text());
    assert.equal(((await json.json()) as { type: string }).type, 'message');
    const stream = await messages('bedrock', true);
    assert.equal(stream.status, 200, await stream.clone().text());
    const text = await stream.text();
    assert.match(text, /^event: message_start$/m);
    assert.match(text, /^event: message_stop$/m);
  });

  it('Vertex: gets a token with google-auth-library', async () => {
    const res = await messages('vertex', false);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(((await res.json()) as { type: string }).type, 'message');
  });

  it('under load the young generation grows again, as V8 sizes it by default', async () => {
    let sent = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (sent++ < 600) {
          const res = await messages('anthropic', false);
          assert.equal(res.status, 200);
          await res.arrayBuffer();
        }
      }),
    );
    const loaded = await youngGenerationBytes();
    assert.ok(loaded > atRest, `young generation ${atRest} → ${loaded} bytes under load`);
  });

  it('the launcher copied without its chunks says what is missing, not a stack', () => {
    const lone = tempDirSync('aibridge-lone-');
    try {
      fs.copyFileSync(BIN, path.join(lone, 'aibridge.cjs'));
      const run = spawnSync(process.execPath, [path.join(lone, 'aibridge.cjs'), '--help'], {
        encoding: 'utf8',
      });
      assert.equal(run.status, 1);
      assert.match(run.stderr, /^aibridge: .*server\/main\.mjs/m);
      assert.match(run.stderr, /the chunks in dist\/server\/ beside it; copy both/);
      assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
    } finally {
      fs.rmSync(lone, { recursive: true, force: true });
    }
  });

  it('tracing: the OpenTelemetry SDK exports the spans of those requests', async () => {
    const deadline = Date.now() + 10_000;
    while (!spans.some((s) => s.startsWith('/v1/traces')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    assert.ok(
      spans.some((s) => s.startsWith('/v1/traces')),
      `spans reached the collector: ${spans.join(', ')}`,
    );
  });
});
