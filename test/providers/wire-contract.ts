import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { Usage } from '../../shared/usage';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { type Listening, listenOnLoopback } from '../helpers/loopback';

/** One recorded upstream answer and what the bridge must make of it. */
export interface WireCase {
  title: string;
  /** File under test/fixtures/<family>/. */
  fixture: string;
  status?: number;
  /** The client's request: path below the instance's prefix, and its body. */
  path: string;
  body: Record<string, unknown>;
  expect: {
    status: 'ok' | 'error';
    usage?: Partial<Usage>;
    toolCalls?: string[];
    /** The recorded error's type. */
    errorType?: string;
    /** The client gets exactly the upstream's bytes (false: the family rewrites it, e.g. an Azure content-filter error). */
    bytesExact: boolean;
    /** Checks the body the client got when it is not byte-exact. */
    clientBody?: (body: unknown) => void;
    /** The exact bytes the client gets when the family re-frames the answer (a fixture in the same folder). */
    clientFixture?: string;
  };
}

/** The error shape of the family's clients, checked on an error the bridge itself raises. */
export type ErrorShape = (body: unknown, code: string) => void;

export interface WireFamily {
  /** The family's `type`; its fixtures are under test/fixtures/<type>/. */
  type: string;
  /** The providers-file entry of an instance named `wire` pointed at `upstream` (the fixture server). */
  entry(upstream: string): Record<string, unknown>;
  /** The instance's client prefix (`/wire` or `/wire/v1`). */
  prefix: string;
  /** Headers the family's clients send besides the bridge key. */
  headers?: Record<string, string>;
  cases: WireCase[];
  errorShape: ErrorShape;
}

const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures');

/** The fixture the next request gets when it carries no `x-fixture` header (a signed request carries only what is signed). */
interface NextFixture {
  name: string;
  status: number;
}

const CONTENT_TYPES: readonly [string, string][] = [
  ['.sse', 'text/event-stream'],
  ['.eventstream', 'application/vnd.amazon.eventstream'],
];

/** An OAuth2 token endpoint's answer, for families that fetch access tokens (`POST /token`). */
const TOKEN_ANSWER = JSON.stringify({
  access_token: 'ya29.wire-contract',
  expires_in: 3600,
  token_type: 'Bearer',
});

/**
 * Answers every request with the fixture its `x-fixture` header names (else the suite's `next`),
 * byte for byte, with the headers of `<fixture>.headers.json` when there is one (AWS's
 * `x-amzn-errortype`).
 */
async function fixtureServer(dir: string): Promise<Listening & { seen: string[]; next: NextFixture }> {
  const seen: string[] = [];
  const state: { next: NextFixture } = { next: { name: '', status: 200 } };
  const server = http.createServer((req, res) => {
    void (async () => {
      for await (const _ of req) {
        // drain the request
      }
      if (req.url === '/token') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(TOKEN_ANSWER);
        return;
      }
      seen.push(req.url ?? '');
      const header = req.headers['x-fixture'];
      const name = header === undefined ? state.next.name : String(header);
      const status = Number(
        req.headers['x-fixture-status'] ?? (header === undefined ? state.next.status : 200),
      );
      const bytes = await fs.readFile(path.join(dir, name));
      const extra = await fs
        .readFile(path.join(dir, `${name}.headers.json`), 'utf8')
        .then((t) => JSON.parse(t) as Record<string, string>)
        .catch(() => ({}));
      res.writeHead(status, {
        'content-type': CONTENT_TYPES.find(([ext]) => name.endsWith(ext))?.[1] ?? 'application/json',
        'x-request-id': 'req_fixture',
        'request-id': 'req_fixture',
        'apim-request-id': 'req_fixture',
        'x-amzn-requestid': 'req_fixture',
        ...extra,
      });
      // In two pieces, split inside an event: the meter must not depend on chunk boundaries.
      const cut = Math.floor(bytes.length / 2);
      res.write(bytes.subarray(0, cut));
      setImmediate(() => res.end(bytes.subarray(cut)));
    })();
  });
  // The suite sets `next` on the object returned: the handler reads it from there.
  return Object.assign(state, await listenOnLoopback(server), { seen });
}

/**
 * The same cases on every family: each recorded answer is served to the bridge by a fixture
 * server, a client asks through an instance of the family, and the suite checks what the client
 * got (byte for byte where the bridge must not touch it) and what was recorded (usage, tool calls,
 * errors). Run by test/server/wire-contract.test.ts on every family with fixtures.
 */
export function wireContract(f: WireFamily): void {
  describe(`the wire contract: ${f.type}`, () => {
    let upstream: Listening & { seen: string[]; next: NextFixture };
    let tb: TestBridge;
    let key: string;
    const dir = path.join(FIXTURES, f.type);

    before(async () => {
      upstream = await fixtureServer(dir);
      const data = await tempDir();
      const file = path.join(data, 'providers.json');
      await fs.writeFile(file, JSON.stringify({ providers: { wire: f.entry(upstream.origin) } }));
      tb = await startBridge('http://127.0.0.1:9', {
        AIBRIDGE_PROVIDERS_FILE: file,
        AIBRIDGE_BREAKER_THRESHOLD: '0',
      });
      key = (await tb.addUser(`wire-${f.type}@example.com`)).key;
    });
    after(async () => {
      await tb?.close();
      await upstream?.stop();
    });

    for (const c of f.cases) {
      it(c.title, async () => {
        const n = (await tb.interceptions(0, key)).length;
        upstream.next = { name: c.fixture, status: c.status ?? 200 };
        const res = await fetch(`${tb.url}${f.prefix}${c.path}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            'x-fixture': c.fixture,
            'x-fixture-status': String(c.status ?? 200),
            ...f.headers,
          },
          body: JSON.stringify(c.body),
        });
        const got = Buffer.from(await res.arrayBuffer());
        const want = await fs.readFile(path.join(dir, c.expect.clientFixture ?? c.fixture));
        assert.equal(res.status, c.status ?? 200);
        if (c.expect.bytesExact || c.expect.clientFixture)
          assert.ok(got.equals(want), `bytes differ:\n${got}\n---\n${want}`);
        else c.expect.clientBody?.(JSON.parse(got.toString('utf8')));
        const rec = (await tb.interceptions(n + 1, key))[0]!;
        assert.equal(rec.provider, 'wire');
        assert.equal(rec.status, c.expect.status);
        if (c.expect.usage)
          for (const [k, v] of Object.entries(c.expect.usage))
            assert.equal(rec.usage[k as keyof Usage], v, k);
        if (c.expect.toolCalls)
          assert.deepEqual(
            rec.toolCalls.map((t) => t.name),
            c.expect.toolCalls,
          );
        if (c.expect.errorType) assert.equal(rec.error?.type, c.expect.errorType);
        if (c.expect.status === 'ok') assert.equal(rec.error, null);
      });
    }

    it('answers its own errors in the family’s client shape', async () => {
      const res = await fetch(`${tb.url}${f.prefix}${f.cases[0]!.path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...f.headers },
        body: '{not json',
      });
      assert.equal(res.status, 400);
      f.errorShape(await res.json(), 'invalid_json');
    });
  });
}
