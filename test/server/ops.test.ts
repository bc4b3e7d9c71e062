import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AnthropicMock, DEFAULT_USAGE, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { OPENAI_UPSTREAM_KEY, OPENAI_USAGE, OpenAIMock } from '../helpers/openai-mock';
import { keySignIn } from '../helpers/session';

const METRICS_TOKEN = 'metrics-token-for-tests-7f3a';
const SONNET_45 = { input: 3, output: 15, cacheRead: 0.3, cacheWrite: 3.75 };

async function send(
  tb: TestBridge,
  route: string,
  key: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await fetch(tb.url + route, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      authorization: `Bearer ${key}`,
      ...headers,
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

/** Sample value of one series in Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const got = Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[2]);
  }
  return undefined;
}

describe('operating the bridge', function () {
  this.timeout(60_000);
  let anthropic: AnthropicMock;
  let openai: OpenAIMock;

  before(async () => {
    anthropic = await new AnthropicMock().start();
    openai = await new OpenAIMock().start();
  });
  after(async () => {
    await openai.stop();
    await anthropic.stop();
  });

  describe('metrics, logs and readiness', () => {
    let tb: TestBridge;
    before(async () => {
      tb = await startBridge(anthropic.url, {
        AIBRIDGE_OPENAI_BASE_URL: openai.url,
        AIBRIDGE_METRICS_TOKEN: METRICS_TOKEN,
        AIBRIDGE_LOG_LEVEL: 'trace',
      });
    });
    after(() => tb.close());

    it('a scrape shows the exact requests, tokens per kind and cost the traffic implies', async () => {
      const dev = await tb.addUser('metrics@example.com');
      const msg = { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] };
      for (let i = 0; i < 3; i++)
        assert.equal((await send(tb, '/anthropic/v1/messages', dev.key, msg)).status, 200);
      assert.equal((await send(tb, '/anthropic/v1/messages', dev.key, { ...msg, stream: true })).status, 200);
      const chat = { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] };
      assert.equal((await send(tb, '/openai/v1/chat/completions', dev.key, chat)).status, 200);
      await tb.interceptions(5, dev.key);
      await tb.bridge.recorder.drain();

      const res = await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await res.text();
      const a = { provider: 'anthropic', api: 'messages', model: 'claude-sonnet-4-5' };
      assert.equal(sample(text, 'aibridge_requests_total', { ...a, status: 'ok' }), 4);
      assert.equal(
        sample(text, 'aibridge_tokens_total', { ...a, kind: 'input' }),
        4 * DEFAULT_USAGE.input_tokens,
      );
      assert.equal(
        sample(text, 'aibridge_tokens_total', { ...a, kind: 'output' }),
        4 * DEFAULT_USAGE.output_tokens,
      );
      assert.equal(
        sample(text, 'aibridge_tokens_total', { ...a, kind: 'cacheRead' }),
        4 * DEFAULT_USAGE.cache_read_input_tokens,
      );
      assert.equal(
        sample(text, 'aibridge_tokens_total', { ...a, kind: 'cacheWrite' }),
        4 * DEFAULT_USAGE.cache_creation_input_tokens,
      );
      const perRequest =
        (DEFAULT_USAGE.input_tokens * SONNET_45.input +
          DEFAULT_USAGE.output_tokens * SONNET_45.output +
          DEFAULT_USAGE.cache_read_input_tokens * SONNET_45.cacheRead +
          DEFAULT_USAGE.cache_creation_input_tokens * SONNET_45.cacheWrite) /
        1e6;
      const cost = sample(text, 'aibridge_cost_usd_total', {
        provider: 'anthropic',
        model: 'claude-sonnet-4-5',
      })!;
      assert.ok(Math.abs(cost - 4 * perRequest) < 1e-9, `${cost} vs ${4 * perRequest}`);
      const o = { provider: 'openai', api: 'chat.completions', model: 'gpt-4o' };
      assert.equal(sample(text, 'aibridge_requests_total', { ...o, status: 'ok' }), 1);
      assert.equal(
        sample(text, 'aibridge_tokens_total', { ...o, kind: 'reasoning' }),
        OPENAI_USAGE.reasoning,
      );
      assert.equal(
        sample(text, 'aibridge_upstream_latency_seconds_count', { provider: 'anthropic', api: 'messages' }),
        4,
      );
      assert.equal(
        sample(text, 'aibridge_time_to_first_byte_seconds_count', {
          provider: 'openai',
          api: 'chat.completions',
        }),
        1,
      );
      assert.equal(sample(text, 'aibridge_streams_in_flight', { provider: 'anthropic', api: 'messages' }), 0);
      assert.equal(sample(text, 'aibridge_audit_write_seconds_count', {}), 5);
      assert.ok(sample(text, 'aibridge_process_resident_memory_bytes', {})! > 0);
      assert.ok(!text.includes('metrics@example.com'), 'no emails in labels');

      for (const [auth, status] of [
        [undefined, 401],
        ['Bearer wrong-token', 401],
        [`Bearer ${dev.key}`, 403],
      ] as const) {
        const refused = await fetch(`${tb.url}/metrics`, { headers: auth ? { authorization: auth } : {} });
        assert.equal(refused.status, status, `metrics with ${auth}`);
      }
      const asAdmin = await fetch(`${tb.url}/metrics`, {
        headers: { authorization: `Bearer ${tb.adminKey}` },
      });
      assert.equal(asAdmin.status, 200);
    });

    it('serves /metrics unauthenticated on its own listener', async () => {
      const url = await tb.bridge.listenMetrics('127.0.0.1', 0);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^# HELP aibridge_/m);
      // A probe pointed at this port by mistake learns where it should look, in the bridge's shape.
      const probe = await fetch(url.replace(/\/metrics$/, '/healthz'));
      assert.equal(probe.status, 404);
      const body = (await probe.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, 'not_found');
      assert.match(body.error.message, /only GET \/metrics; \/healthz is on the bridge's main port/);
    });

    it('a fresh bridge, before any traffic, has a sample for every series the Grafana dashboard queries', async () => {
      const dashboard = JSON.parse(await fs.readFile('docs/grafana-dashboard.json', 'utf8')) as {
        panels: { targets: { expr: string }[] }[];
      };
      const wanted = new Set<string>();
      for (const p of dashboard.panels) {
        for (const t of p.targets) for (const m of t.expr.matchAll(/aibridge_[a-z_]+/g)) wanted.add(m[0]);
      }
      assert.ok(wanted.size >= 10);
      // Its own bridge: the suite's shared one has served traffic, which would hide a missing series.
      const fresh = await startBridge(anthropic.url, {
        AIBRIDGE_OPENAI_BASE_URL: openai.url,
        AIBRIDGE_METRICS_TOKEN: METRICS_TOKEN,
      });
      try {
        const text = await (
          await fetch(`${fresh.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
        ).text();
        const exported = new Set([...text.matchAll(/^# TYPE (\S+) (\w+)/gm)].map((m) => m[1]!));
        const sampled = new Set([...text.matchAll(/^(aibridge_[a-z_]+)[{ ]/gm)].map((m) => m[1]!));
        const noData: string[] = [];
        for (const name of wanted) {
          const base = name.replace(/_(bucket|sum|count)$/, '');
          assert.ok(
            exported.has(name) || exported.has(base),
            `dashboard queries ${name}, which is not exported`,
          );
          // Quantile panels read a histogram's `_bucket` series, which the dashboard names itself.
          if (!sampled.has(name)) noData.push(name);
        }
        assert.deepEqual(noData, [], 'these dashboard series have no sample before the first request');
        // The zeroes are real label sets: every provider's APIs, every status, kind and refusal reason.
        for (const [provider, api] of [
          ['anthropic', 'messages'],
          ['openai', 'chat.completions'],
          ['openai', 'responses'],
        ] as const) {
          for (const status of ['ok', 'error', 'client_aborted']) {
            assert.equal(sample(text, 'aibridge_requests_total', { provider, api, status }), 0);
          }
          assert.equal(sample(text, 'aibridge_tokens_total', { provider, api, kind: 'output' }), 0);
          assert.equal(sample(text, 'aibridge_upstream_latency_seconds_count', { provider, api }), 0);
          assert.equal(sample(text, 'aibridge_streams_in_flight', { provider, api }), 0);
        }
        for (const reason of ['budget_exceeded', 'rate_limited', 'model_denied', 'model_unpriced']) {
          assert.equal(sample(text, 'aibridge_governance_refusals_total', { reason }), 0, reason);
        }
        // Every rule docs/spend.md lists, session caps and pool keys included.
        const spend = await fs.readFile('docs/spend.md', 'utf8');
        const rules = [...spend.slice(spend.indexOf('### Rules')).matchAll(/^\| `([a-z_]+)` +\|/gm)].map(
          (m) => m[1]!,
        );
        assert.ok(rules.length >= 7);
        for (const rule of rules) assert.equal(sample(text, 'aibridge_alerts_total', { rule }), 0, rule);
      } finally {
        await fresh.close();
      }
    });

    it("docs/operations.md's table lists every series /metrics exports, with its type and labels", async () => {
      const doc = await fs.readFile('docs/operations.md', 'utf8');
      const documented = new Map<string, { type: string; labels: string | undefined }>();
      for (const row of doc.matchAll(/^\| (`aibridge_.*?) +\| (\w+) +\|/gm)) {
        for (const s of row[1]!.matchAll(/`(aibridge_[a-z_]+)(?:\{([a-z_,]+)\})?`/g))
          documented.set(s[1]!, { type: row[2]!, labels: s[2] });
      }
      const text = await (
        await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
      ).text();
      // The process and Node.js series are one row (`aibridge_process_*`, `aibridge_nodejs_*`).
      const exported = [...text.matchAll(/^# TYPE (aibridge_[a-z_]+) (\w+)/gm)].filter(
        (m) => !/^aibridge_(process|nodejs)_/.test(m[1]!),
      );
      assert.ok(exported.length >= 20);
      const wrong: string[] = [];
      for (const [, name, type] of exported) {
        const row = documented.get(name!);
        if (row === undefined) wrong.push(`${name} is not listed`);
        else if (row.type !== type) wrong.push(`${name} is a ${type}, listed as a ${row.type}`);
        const sampleLabels = new RegExp(`^${name}(?:_bucket|_sum|_count)?\\{([^}]*)\\}`, 'm').exec(text)?.[1];
        const labels = sampleLabels
          ?.split(/",/)
          .map((l) => l.split('=')[0])
          .filter((l) => l !== 'le')
          .join(',');
        if (row !== undefined && sampleLabels !== undefined && (labels || undefined) !== row.labels)
          wrong.push(`${name} has labels {${labels}}, listed with {${row.labels}}`);
      }
      assert.deepEqual(wrong, []);
    });

    it('writes one JSON log line per request, never a key', async () => {
      const dev = await tb.addUser('logs@example.com');
      tb.logs.length = 0;
      await fetch(`${tb.url}/api/v1/me`, { headers: { authorization: `Bearer ${dev.key}` } });
      const msg = { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] };
      const res = await send(tb, '/anthropic/v1/messages', dev.key, msg, {
        cookie: 'session=cookie-secret-55',
      });
      assert.equal(res.status, 200);
      await send(
        tb,
        '/anthropic/v1/messages',
        'aib_planted-but-wrong-key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
        msg,
      );
      // An unmatched route names its path (not its query, where a credential may be).
      await fetch(`${tb.url}/favicon.ico?key=query-secret-77`);
      await tb.interceptions(1, dev.key);
      const lines = tb.logs
        .join('')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const me = lines.filter((l) => l.msg === 'request' && l.route === '/api/v1/me');
      assert.equal(me.length, 1);
      assert.equal(me[0]!.statusCode, 200);
      assert.ok(typeof me[0]!.reqId === 'string');
      const missing = lines.filter((l) => l.msg === 'request' && l.statusCode === 404);
      assert.deepEqual(
        missing.map((l) => [l.route, l.path]),
        [[null, '/favicon.ico']],
      );
      assert.equal(me[0]!.path, undefined, 'a matched route is named by its route alone');
      const model = lines.filter((l) => l.msg === 'interception' && l.userId === dev.user.id);
      assert.equal(model.length, 1, 'a model request has exactly one line, with its usage');
      assert.equal(typeof model[0]!.reqId, 'string');
      assert.ok(model[0]!.interceptionId && model[0]!.usage);
      const proxied = lines.filter((l) => l.msg === 'request' && String(l.route).startsWith('/anthropic'));
      assert.deepEqual(
        proxied.map((l) => l.statusCode),
        [401],
        'only the refused request has a plain request line; the metered one has its interception line',
      );
      const all = tb.logs.join('');
      const planted = [
        dev.key,
        tb.adminKey,
        UPSTREAM_KEY,
        OPENAI_UPSTREAM_KEY,
        'cookie-secret-55',
        'query-secret-77',
        'aib_planted',
      ];
      for (const secret of planted) {
        assert.ok(!all.includes(secret), `log output contains ${secret.slice(0, 8)}…`);
      }
      // Every byte under the data dir, but the admin key file (written once, by design).
      await tb.bridge.recorder.drain();
      const files = (await fs.readdir(tb.dataDir, { recursive: true, withFileTypes: true })).filter((f) =>
        f.isFile(),
      );
      assert.ok(files.length >= 3);
      for (const f of files) {
        if (f.name === 'admin.key') continue;
        const bytes = await fs.readFile(path.join(f.parentPath, f.name));
        for (const secret of planted) {
          assert.ok(!bytes.includes(secret), `${f.name} contains ${secret.slice(0, 8)}…`);
        }
      }
    });

    it('/readyz reports the store, upstreams and breakers', async () => {
      const res = await tb.api<{ status: string; store: { ok: boolean; kind: string }; upstreams: object }>(
        'GET',
        '/readyz',
        tb.adminKey,
      );
      assert.equal(res.status, 200);
      assert.equal(res.body.status, 'ready');
      assert.deepEqual(res.body.store, { kind: 'embedded', ok: true });
      const bare = await startBridge(anthropic.url, {
        AIBRIDGE_ANTHROPIC_API_KEY: '',
        AIBRIDGE_OPENAI_API_KEY: '',
      });
      try {
        const notReady = await bare.api<{ status: string }>('GET', '/readyz', null);
        assert.equal(notReady.status, 503);
        assert.deepEqual(notReady.body, { status: 'not_ready' });
      } finally {
        await bare.close();
      }
    });

    it('unauthenticated /healthz and /readyz say only up or down; details are for admins and the metrics token', async () => {
      const health = await tb.api<Record<string, unknown>>('GET', '/healthz', null);
      assert.equal(health.status, 200);
      assert.deepEqual(health.body, { status: 'ok' });
      const ready = await tb.api<Record<string, unknown>>('GET', '/readyz', null);
      assert.deepEqual([ready.status, ready.body], [200, { status: 'ready' }]);

      const member = await tb.addUser('health-member@example.com');
      for (const route of ['/healthz', '/readyz']) {
        assert.deepEqual(
          Object.keys((await tb.api<object>('GET', route, member.key)).body),
          ['status'],
          route,
        );
        assert.deepEqual(Object.keys((await tb.api<object>('GET', route, 'aib_not-a-real-key')).body), [
          'status',
        ]);
      }

      const admin = await tb.api<{ upstreams: Record<string, { baseUrl: string }>; breakers: unknown[] }>(
        'GET',
        '/healthz',
        tb.adminKey,
      );
      assert.equal(admin.body.upstreams.anthropic?.baseUrl, anthropic.url);
      assert.ok(Array.isArray(admin.body.breakers));
      const byToken = await tb.api<{ upstreams: object; store: object }>('GET', '/readyz', METRICS_TOKEN);
      assert.ok(byToken.body.upstreams && byToken.body.store, 'the metrics token reads the details');

      // The admin page's cookie counts as an admin.
      const signIn = await keySignIn(tb.url, tb.adminKey, { origin: tb.url });
      const cookie = signIn.headers.get('set-cookie')?.split(';')[0];
      assert.ok(cookie, `signed in: ${signIn.status}`);
      const viaCookie = (await (await fetch(`${tb.url}/healthz`, { headers: { cookie } })).json()) as object;
      assert.ok('upstreams' in viaCookie, 'an admin session sees the details');
    });

    it('/metrics exports the audit chain head', async () => {
      const res = await fetch(`${tb.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      const head = await tb.bridge.store.chainHead();
      assert.ok(head.seq > 0, 'the suite has written records');
      assert.match(await res.text(), new RegExp(`^aibridge_audit_chain_records ${head.seq}$`, 'm'));
    });
  });

  describe('traces', () => {
    interface OtlpSpan {
      traceId: string;
      spanId: string;
      parentSpanId?: string;
      name: string;
      kind: number;
      attributes: { key: string; value: Record<string, unknown> }[];
    }
    const spans: OtlpSpan[] = [];
    let receiver: http.Server;
    let receiverUrl = '';

    before(async () => {
      receiver = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          assert.equal(req.url, '/v1/traces');
          const body = JSON.parse(Buffer.concat(chunks).toString()) as {
            resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
          };
          for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        });
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((r) => receiver.close(() => r())));

    const attr = (s: OtlpSpan, key: string): unknown => {
      const v = s.attributes.find((a) => a.key === key)?.value;
      if (!v) return undefined;
      if ('stringValue' in v) return v.stringValue;
      if ('intValue' in v) return Number(v.intValue);
      if ('arrayValue' in v)
        return (v.arrayValue as { values: { stringValue: string }[] }).values.map((x) => x.stringValue);
      return Object.values(v)[0];
    };

    it('sends a GenAI span per request to the OTLP receiver, continuing the caller’s traceparent upstream', async () => {
      const tb = await startBridge(anthropic.url, { OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl });
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const parentId = '00f067aa0ba902b7';
      try {
        const dev = await tb.addUser('trace@example.com');
        const before = anthropic.messageRequests().length;
        const res = await send(
          tb,
          '/anthropic/v1/messages',
          dev.key,
          {
            model: 'claude-sonnet-4-5',
            max_tokens: 64,
            messages: [{ role: 'user', content: 'a secret prompt' }],
          },
          { traceparent: `00-${traceId}-${parentId}-01` },
        );
        assert.equal(res.status, 200);
        const upstream = anthropic.messageRequests()[before]!;
        const sentParent = String(upstream.headers.traceparent);
        assert.match(sentParent, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'trace continued upstream');
      } finally {
        await tb.close();
      }
      const root = spans.find((s) => s.traceId === traceId && s.parentSpanId === parentId);
      assert.ok(root, `no span continuing the traceparent: ${JSON.stringify(spans.map((s) => s.name))}`);
      assert.equal(root.name, 'chat claude-sonnet-4-5');
      assert.equal(attr(root, 'gen_ai.system'), 'anthropic');
      assert.equal(attr(root, 'gen_ai.operation.name'), 'chat');
      assert.equal(attr(root, 'http.request.method'), 'POST');
      assert.equal(attr(root, 'http.response.status_code'), 200);
      assert.equal(attr(root, 'gen_ai.request.model'), 'claude-sonnet-4-5');
      assert.ok(String(attr(root, 'gen_ai.response.model')).startsWith('claude'));
      assert.equal(
        attr(root, 'gen_ai.usage.input_tokens'),
        DEFAULT_USAGE.input_tokens +
          DEFAULT_USAGE.cache_read_input_tokens +
          DEFAULT_USAGE.cache_creation_input_tokens,
      );
      assert.equal(attr(root, 'gen_ai.usage.output_tokens'), DEFAULT_USAGE.output_tokens);
      assert.deepEqual(attr(root, 'gen_ai.response.finish_reasons'), ['end_turn']);
      assert.ok(!JSON.stringify(root).includes('a secret prompt'), 'no prompt text unless enabled');
      const child = spans.find((s) => s.parentSpanId === root.spanId);
      assert.ok(child, 'a child span for the upstream call');
      assert.equal(attr(child, 'http.response.status_code'), 200);
      assert.equal(attr(child, 'http.request.method'), 'POST');
      assert.match(String(attr(child, 'url.full')), /\/v1\/messages$/);
    });

    it('a prompt put in spans is redacted as the record is, left out at capture none, and no query credential reaches url.full or the provider', async () => {
      const tb = await startBridge(anthropic.url, {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
        AIBRIDGE_OTEL_CAPTURE_PROMPTS: 'true',
      });
      const traceIds = ['5bf92f3577b34da6a3ce929d0e0e4736', '6bf92f3577b34da6a3ce929d0e0e4736'];
      const secret = 'AKIAIOSFODNN7EXAMPLE';
      try {
        const dev = await tb.addUser('redact-trace@example.com');
        const quiet = await tb.addUser('quiet-trace@example.com', { team: 'quiet' });
        assert.equal(
          (await tb.api('PUT', '/api/v1/teams/quiet/capture', tb.adminKey, { level: 'none' })).status,
          200,
        );
        const before = anthropic.messageRequests().length;
        for (const [i, who] of [dev, quiet].entries()) {
          const res = await send(
            tb,
            `/anthropic/v1/messages?key=${who.key}&beta=true`,
            who.key,
            {
              model: 'claude-sonnet-4-5',
              max_tokens: 64,
              messages: [{ role: 'user', content: `deploy with ${secret} please, ${who.user.email}` }],
            },
            { traceparent: `00-${traceIds[i]}-00f067aa0ba902b7-01` },
          );
          assert.equal(res.status, 200);
        }
        for (const r of anthropic.messageRequests().slice(before)) {
          assert.ok(!String(r.url).includes('aib_'), `the provider saw no bridge key: ${r.url}`);
          assert.match(String(r.url), /[?&]beta=true/, 'other parameters go on');
        }
      } finally {
        await tb.close();
      }
      const [mine, quiets] = traceIds.map((id) => spans.filter((s) => s.traceId === id));
      const root = mine!.find((s) => s.name.startsWith('chat'))!;
      const prompt = String(attr(root, 'gen_ai.prompt'));
      assert.match(prompt, /deploy with \[REDACTED:aws_access_key_id\] please/);
      assert.ok(!JSON.stringify(mine).includes(secret), 'the secret is in no span');
      assert.ok(!JSON.stringify([...mine!, ...quiets!]).includes('aib_'), 'nor a bridge key (url.full)');
      const quietRoot = quiets!.find((s) => s.name.startsWith('chat'));
      assert.ok(quietRoot, 'the capture-none request is traced');
      assert.equal(attr(quietRoot, 'gen_ai.prompt'), undefined, 'without its prompt');
    });
  });

  describe('the single-file binary', () => {
    let child: ChildProcess | undefined;
    after(() => child?.kill('SIGKILL'));

    it('runs from a directory without node_modules and proxies a streamed request', async function () {
      this.timeout(120_000);
      const built = await fs.stat('dist/aibridge').catch(() => undefined);
      const bundle = await fs.stat('dist/aibridge.cjs');
      if (!built || built.mtimeMs < bundle.mtimeMs) {
        execFileSync(process.execPath, ['scripts/build-binary.mjs'], { stdio: 'ignore' });
      }
      const dir = await tempDir('aibridge-binary-');
      const bin = path.join(dir, 'aibridge');
      await fs.copyFile('dist/aibridge', bin);
      await fs.chmod(bin, 0o755);
      child = spawn(bin, ['serve', '--port', '0', '--data-dir', path.join(dir, 'data')], {
        cwd: dir,
        env: {
          PATH: '/usr/bin:/bin',
          AIBRIDGE_ANTHROPIC_BASE_URL: anthropic.url,
          AIBRIDGE_ANTHROPIC_API_KEY: UPSTREAM_KEY,
          AIBRIDGE_LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout!.on('data', (c) => {
        out += c;
      });
      const url = await new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`binary did not start: ${out}`)), 20_000);
        child!.stdout!.on('data', () => {
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m) {
            clearTimeout(t);
            resolve(m[1]!);
          }
        });
      });
      // The admin page comes from inside the binary: nothing but the binary is in its directory.
      const page = await fetch(`${url}/admin`);
      assert.equal(page.status, 200);
      const html = await page.text();
      const script = /src="(\/admin\/assets\/[^"]+\.js)"/.exec(html)?.[1];
      assert.ok(script, html.slice(0, 200));
      const js = await fetch(`${url}${script}`);
      assert.equal(js.status, 200);
      assert.match(js.headers.get('content-type') ?? '', /javascript/);
      const adminKey = (await fs.readFile(path.join(dir, 'data', 'admin.key'), 'utf8')).trim();
      const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
      await fetch(`${url}/api/v1/users`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ email: 'bin@example.com' }),
      });
      const key = (await (
        await fetch(`${url}/api/v1/users/bin@example.com/keys`, {
          method: 'POST',
          headers: admin,
          body: '{}',
        })
      ).json()) as { key: string };
      const stream = () =>
        fetch(`${url}/anthropic/v1/messages`, {
          method: 'POST',
          headers: {
            'x-api-key': key.key,
            'content-type': 'application/json',
            'anthropic-version': '2023-06-01',
          },
          body: JSON.stringify({
            model: 'claude-sonnet-4-5',
            max_tokens: 8,
            stream: true,
            messages: [{ role: 'user', content: 'hi' }],
          }),
        });
      const res = await stream();
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /event: message_stop/);
      // Ctrl-C under `npm start`: the terminal's SIGINT, and npm's own a moment later. One request to
      // stop, drained as one (the open stream finishes, exit 0), not the hard exit a second, later
      // signal means.
      let release!: () => void;
      anthropic.next({
        kind: 'gated',
        gate: new Promise<void>((r) => {
          release = r;
        }),
      });
      const open = await stream();
      assert.equal(open.status, 200);
      const exited = new Promise<number | null>((r) => child!.on('exit', r));
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(child.exitCode, null, 'still draining the open stream');
      release();
      assert.match(await open.text(), /event: message_stop/);
      assert.equal(await exited, 0);
      child = undefined;
    });
  });
});
