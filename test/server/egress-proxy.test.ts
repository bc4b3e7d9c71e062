import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import Anthropic from '@anthropic-ai/sdk';
import { createProxy, type ProxyServer } from 'proxy';
import { egressProxy } from '../../server/config';
import { describeEgress, noProxyWarnings, undiciNoProxy } from '../../server/http/egress-proxy';
import { runClaude } from '../helpers/agent-cli';
import { AnthropicMock, MOCK_TEXT, UPSTREAM_KEY } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';
import { runCli } from '../helpers/cli';
import { connectGateway } from '../helpers/gateway-client';
import { EVERYTHING, everythingStdio } from '../helpers/mcp-servers';
import { devKey, exited, type Served, serve } from '../helpers/served-bridge';
import { WebhookReceiver } from '../helpers/webhook-receiver';

const PROXY_USER = 'egress-user';
const PROXY_PASSWORD = 'pr0xy p@ss';

/** A real forward proxy (the `proxy` package undici tests with) that wants Basic credentials, and records where it was asked to go. */
class ForwardProxy {
  readonly tunnels: string[] = [];
  refused = 0;
  private readonly server: ProxyServer = createProxy(http.createServer());
  port = 0;

  async start(): Promise<this> {
    this.server.authenticate = (req) => {
      const ok =
        req.headers['proxy-authorization'] ===
        `Basic ${Buffer.from(`${PROXY_USER}:${PROXY_PASSWORD}`).toString('base64')}`;
      if (!ok) this.refused++;
      return ok;
    };
    this.server.on('connect', (req: http.IncomingMessage) => this.tunnels.push(req.url ?? ''));
    this.server.on('request', (req: http.IncomingMessage) => this.tunnels.push(req.url ?? ''));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(password = PROXY_PASSWORD): string {
    return `http://${PROXY_USER}:${encodeURIComponent(password)}@127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const hostOf = (url: string): string => new URL(url).host;

describe('egress through the organisation’s proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let proxy: ForwardProxy;
  let bridge: Served | undefined;
  before(async () => {
    mock = await new AnthropicMock().start();
    proxy = await new ForwardProxy().start();
  });
  afterEach(async () => {
    if (bridge) {
      bridge.child.kill('SIGKILL');
      await exited(bridge.child);
      bridge = undefined;
    }
  });
  after(async () => {
    await mock.stop();
    await proxy.stop();
  });

  const client = (s: Served, key: string) =>
    new Anthropic({ apiKey: key, baseURL: `${s.url}/anthropic`, maxRetries: 0 });
  /** One small Messages call: the message, or what it was refused with. */
  const ask = (s: Served, key: string) =>
    client(s, key)
      .messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'hi' }],
      })
      .then(
        (m) => m,
        (e: unknown) => e,
      );

  it('sends provider calls through the proxy with its credentials, and never shows them', async () => {
    bridge = await serve(await tempDir('aibridge-egress-'), mock.url, {
      HTTPS_PROXY: proxy.url(),
      HTTP_PROXY: proxy.url(),
      AIBRIDGE_LOG_LEVEL: 'info',
    });
    const before = mock.messageRequests().length;
    const msg = await client(bridge, await devKey(bridge)).messages.create({
      model: 'claude-sonnet-4-6',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'through the proxy?' }],
    });
    assert.equal(msg.content[0]?.type, 'text');
    assert.ok(proxy.tunnels.includes(hostOf(mock.url)), `the proxy carried the call: ${proxy.tunnels}`);
    const seen = mock.messageRequests().slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers['x-api-key'], UPSTREAM_KEY, 'the org key reached the provider');
    assert.equal(seen[0]!.headers['proxy-authorization'], undefined, 'proxy credentials stay with the proxy');
    // The real agent, streaming, end to end: claude → bridge → proxy tunnel → provider.
    const res = await runClaude(
      {
        bridgeUrl: bridge.url,
        key: await devKey(bridge, 'claude@example.com'),
        home: await tempDir('aibridge-claude-home-'),
      },
      ['-p', 'Say hello through the proxy'],
    );
    assert.equal(res.stdout.trim(), MOCK_TEXT);
    assert.ok(
      mock.messageRequests().some((r) => r.headers['user-agent']?.startsWith('claude-cli/')),
      'claude reached the provider',
    );
    const log = bridge.out();
    assert.match(log, /outbound calls go through the egress proxy/);
    assert.match(
      log,
      new RegExp(`http://\\*\\*\\*@127\\.0\\.0\\.1:${proxy.port}`),
      'the proxy is named, its user hidden',
    );
    assert.ok(!log.includes(PROXY_USER) && !log.includes(encodeURIComponent(PROXY_PASSWORD)), log);
  });

  it('goes direct to what NO_PROXY lists (host:port), and through the proxy for the rest: the alert webhook', async () => {
    const hook = await new WebhookReceiver().start();
    try {
      bridge = await serve(await tempDir('aibridge-egress-'), mock.url, {
        HTTP_PROXY: proxy.url(),
        NO_PROXY: `example.invalid, ${hostOf(mock.url)}`,
        AIBRIDGE_ALERT_WEBHOOK_URL: hook.url,
      });
      const tunnelsBefore = proxy.tunnels.length;
      const key = await devKey(bridge);
      const admin = { authorization: `Bearer ${bridge.adminKey}`, 'content-type': 'application/json' };
      const users = (await (await fetch(`${bridge.url}/api/v1/users`, { headers: admin })).json()) as {
        items: { id: string; email: string }[];
      };
      const user = users.items.find((u) => u.email === 'd@example.com')!;
      const put = await fetch(`${bridge.url}/api/v1/budgets`, {
        method: 'PUT',
        headers: admin,
        body: JSON.stringify({
          scope: 'user',
          subject: user.id,
          period: 'week',
          limitUsd: 0.000001,
          action: 'alert',
          thresholds: [1],
        }),
      });
      assert.equal(put.status, 200, await put.text());
      await client(bridge, key).messages.create({
        model: 'claude-sonnet-4-6',
        max_tokens: 16,
        messages: [{ role: 'user', content: 'direct, and an alert' }],
      });
      const [got] = await hook.waitFor(1);
      assert.equal(got!.body.type, 'budget.alert');
      const tunnels = proxy.tunnels.slice(tunnelsBefore);
      assert.ok(!tunnels.includes(hostOf(mock.url)), `NO_PROXY kept the provider direct: ${tunnels}`);
      assert.ok(tunnels.includes(hostOf(hook.url)), `the webhook went through the proxy: ${tunnels}`);
    } finally {
      await hook.stop();
    }
  });

  it('answers a proxy that refuses the bridge as an unreachable provider, in the API’s error shape', async () => {
    bridge = await serve(await tempDir('aibridge-egress-'), mock.url, {
      HTTPS_PROXY: proxy.url('wrong password'),
      HTTP_PROXY: proxy.url('wrong password'),
    });
    const refusedBefore = proxy.refused;
    const err = await ask(bridge, await devKey(bridge));
    assert.ok(err instanceof Anthropic.APIError, String(err));
    assert.equal(err.status, 502);
    const body = err.error as { error?: { type?: string; message?: string } };
    assert.equal(body.error?.type, 'api_error');
    assert.match(body.error?.message ?? '', /egress proxy refused .*HTTP 407/, body.error?.message);
    assert.ok(proxy.refused > refusedBefore, 'the proxy was asked and said no');
    assert.ok(!bridge.out().includes('wrong'), 'the password is not in the log');
  });

  it('bounds a proxy that takes the connection and never answers CONNECT by the connect timeout', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      bridge = await serve(await tempDir('aibridge-egress-'), mock.url, {
        HTTPS_PROXY: at,
        HTTP_PROXY: at,
        AIBRIDGE_CONNECT_TIMEOUT_MS: '500',
      });
      const started = Date.now();
      const err = await ask(bridge, await devKey(bridge));
      assert.ok(err instanceof Anthropic.APIError, String(err));
      assert.equal(err.status, 504);
      assert.ok(Date.now() - started < 5_000, `answered after ${Date.now() - started} ms`);
    } finally {
      silent.close();
    }
  });

  it('answers at once, and stops connecting, when the proxy closes the connection without answering CONNECT', async () => {
    let accepted = 0;
    const closing = net.createServer((s) => {
      accepted++;
      s.end();
    });
    await new Promise<void>((r) => closing.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(closing.address() as AddressInfo).port}`;
      bridge = await serve(await tempDir('aibridge-egress-'), mock.url, { HTTPS_PROXY: at, HTTP_PROXY: at });
      const started = Date.now();
      const err = await ask(bridge, await devKey(bridge));
      assert.ok(err instanceof Anthropic.APIError, String(err));
      assert.equal(err.status, 502);
      assert.match(
        (err.error as { error?: { message?: string } }).error?.message ?? '',
        /egress proxy closed the connection before it answered CONNECT/,
      );
      assert.ok(Date.now() - started < 3_000, `answered after ${Date.now() - started} ms`);
      const after = accepted;
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(accepted - after <= 1, `still connecting: ${accepted - after} more connections in 500 ms`);
      assert.ok(after < 20, `${after} connections for one request`);
    } finally {
      closing.close();
    }
  });

  it('refuses at start a proxy URL it cannot use, without echoing it', async () => {
    for (const value of [
      'http://user:s3cret%zz@127.0.0.1:3128',
      'http://user:s3cret@[::1',
      'socks5://user:s3cret@127.0.0.1:1080',
      'http://user:s3cret@h:3128/path',
    ]) {
      const r = await runCli(['serve', '--port', '0', '--data-dir', await tempDir('aibridge-egress-')], {
        HTTPS_PROXY: value,
      });
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /HTTPS_PROXY/);
      assert.ok(!r.out.includes('s3cret'), r.out);
    }
  });

  it('reads the variables as curl does: lower case first, a bare host:port as http://', () => {
    assert.equal(egressProxy({}), undefined, 'no proxy: direct');
    assert.equal(egressProxy({ NO_PROXY: 'x' }), undefined, 'NO_PROXY alone changes nothing');
    const p = egressProxy({
      HTTPS_PROXY: 'http://upper:3128',
      https_proxy: 'proxy.corp:3128',
      NO_PROXY: 'a.example, 10.0.0.0/8 .corp.example',
    })!;
    assert.deepEqual(p, {
      httpsProxy: 'http://proxy.corp:3128',
      httpProxy: undefined,
      noProxy: 'a.example, 10.0.0.0/8 .corp.example',
    });
    assert.deepEqual(noProxyWarnings(p), [
      'NO_PROXY entry "10.0.0.0/8" is a CIDR range, which the bridge does not match: list the hosts or domains to reach direct',
    ]);
    assert.equal(
      egressProxy({ https_proxy: ' ', HTTPS_PROXY: 'http://upper:3128', no_proxy: '', NO_PROXY: 'b.example' })
        ?.httpsProxy,
      'http://upper:3128',
      'an empty lower-case variable is unset, as in curl',
    );
    assert.equal(
      egressProxy({ https_proxy: '', HTTPS_PROXY: 'http://upper:3128', no_proxy: '', NO_PROXY: 'b.example' })
        ?.noProxy,
      'b.example',
    );
    assert.equal(
      undiciNoProxy('::1, fd00::1 [::2]:8080 a.example:80'),
      '[::1],[fd00::1],[::2]:8080,a.example:80',
    );
    const withUser = egressProxy({ HTTP_PROXY: 'https://me:pa%20ss@proxy.corp:8443/' })!;
    assert.equal(withUser.httpProxy, 'https://me:pa%20ss@proxy.corp:8443');
    assert.deepEqual(describeEgress(withUser), {
      https: 'none (direct)',
      http: 'https://***@proxy.corp:8443',
      noProxy: '(none)',
    });
  });

  describe('to a provider over TLS', () => {
    const TLS_DIR = path.resolve('test/fixtures/tls');
    let tlsFront: tls.Server;
    let httpsUrl = '';
    let handshakes = 0;
    before(async () => {
      // The mock behind a TLS terminator: an HTTPS provider whose certificate an in-house CA signed.
      tlsFront = tls.createServer(
        {
          key: fs.readFileSync(path.join(TLS_DIR, 'server-key.pem')),
          cert: fs.readFileSync(path.join(TLS_DIR, 'server.pem')),
        },
        (clear) => {
          handshakes++;
          const up = net.connect(Number(new URL(mock.url).port), '127.0.0.1');
          clear.on('error', () => up.destroy());
          up.on('error', () => clear.destroy());
          clear.pipe(up).pipe(clear);
        },
      );
      tlsFront.on('tlsClientError', () => undefined);
      await new Promise<void>((r) => tlsFront.listen(0, '127.0.0.1', r));
      httpsUrl = `https://127.0.0.1:${(tlsFront.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((r) => tlsFront.close(() => r())));

    it('refuses a certificate it does not trust, says what to do, and sends the provider nothing', async () => {
      bridge = await serve(await tempDir('aibridge-egress-'), httpsUrl);
      const before = handshakes;
      const err = await ask(bridge, await devKey(bridge));
      assert.ok(err instanceof Anthropic.APIError, String(err));
      assert.equal(err.status, 502);
      const message = (err.error as { error?: { message?: string } }).error?.message ?? '';
      assert.match(
        message,
        /TLS certificate on the way to the provider was refused \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/,
      );
      assert.match(message, /NODE_EXTRA_CA_CERTS/);
      assert.equal(
        handshakes,
        before,
        'no TLS session was completed, so no request (nor the org key) went out',
      );
    });

    it('trusts the organisation’s CA given with NODE_EXTRA_CA_CERTS, direct and through the proxy’s tunnel', async () => {
      for (const viaProxy of [false, true]) {
        const tunnelsBefore = proxy.tunnels.length;
        bridge = await serve(await tempDir('aibridge-egress-'), httpsUrl, {
          NODE_EXTRA_CA_CERTS: path.join(TLS_DIR, 'ca.pem'),
          ...(viaProxy ? { HTTPS_PROXY: proxy.url() } : {}),
        });
        const msg = await ask(bridge, await devKey(bridge));
        assert.ok(!(msg instanceof Error), String(msg));
        assert.equal(proxy.tunnels.slice(tunnelsBefore).includes(hostOf(httpsUrl)), viaProxy);
        bridge.child.kill('SIGKILL');
        await exited(bridge.child);
        bridge = undefined;
      }
    });
  });

  it('starts stdio MCP servers with the proxy variables, under their own env', async () => {
    const dir = await tempDir('aibridge-egress-mcp-');
    const mcpFile = path.join(dir, 'mcp-servers.json');
    fs.writeFileSync(
      mcpFile,
      JSON.stringify({
        servers: {
          everything: everythingStdio({ tools: { allow: ['get-env'] } }),
          own: everythingStdio({
            tools: { allow: ['get-env'] },
            transport: {
              type: 'stdio',
              command: process.execPath,
              args: [EVERYTHING, 'stdio'],
              env: { NO_PROXY: 'its-own.example', https_proxy: 'http://its-own-proxy:3128' },
            },
          }),
        },
      }),
    );
    const tb = await startBridge(mock.url, {
      HTTPS_PROXY: proxy.url(),
      NO_PROXY: 'corp.example',
      AIBRIDGE_MCP_CONFIG: mcpFile,
    });
    try {
      await tb.bridge.mcp.ready();
      const agent = await connectGateway(tb.url, (await tb.addUser('mcp-proxy@example.com')).key);
      const envOf = async (tool: string): Promise<Record<string, string>> => {
        const r = (await agent.callTool({ name: tool, arguments: {} })) as { content: { text: string }[] };
        return JSON.parse(r.content[0]!.text) as Record<string, string>;
      };
      const shared = await envOf('everything__get-env');
      assert.equal(shared.HTTPS_PROXY, proxy.url());
      assert.equal(shared.https_proxy, proxy.url());
      assert.equal(shared.NO_PROXY, 'corp.example');
      assert.equal(shared.HTTP_PROXY, undefined, 'only what is set');
      const own = await envOf('own__get-env');
      assert.equal(own.NO_PROXY, 'its-own.example', 'a server’s own env wins');
      assert.equal(own.no_proxy, undefined, 'in both spellings: tools read the lower case first');
      assert.equal(own.https_proxy, 'http://its-own-proxy:3128');
      assert.equal(own.HTTPS_PROXY, undefined);
      await agent.close();
    } finally {
      await tb.close();
    }
  });
});
