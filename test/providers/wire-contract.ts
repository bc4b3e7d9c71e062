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

/** Answers every request with the fixture its `x-fixture` header names, byte for byte. */
async function fixtureServer(dir: string): Promise<Listening & { seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    void (async () => {
      for await (const _ of req) {
        // drain the request
      }
      seen.push(req.url ?? '');
      const name = String(req.headers['x-fixture'] ?? '');
      const status = Number(req.headers['x-fixture-status'] ?? 200);
      const bytes = await fs.readFile(path.join(dir, name));
      res.writeHead(status, {
        'content-type': name.endsWith('.sse') ? 'text/event-stream' : 'application/json',
        'x-request-id': 'req_fixture',
        'request-id': 'req_fixture',
        'apim-request-id': 'req_fixture',
      });
      // In two pieces, split inside an event: the meter must not depend on chunk boundaries.
      const cut = Math.floor(bytes.length / 2);
      res.write(bytes.subarray(0, cut));
      setImmediate(() => res.end(bytes.subarray(cut)));
    })();
  });
  return { ...(await listenOnLoopback(server)), seen };
}

/**
 * The same cases on every family: each recorded answer is served to the bridge by a fixture
 * server, a client asks through an instance of the family, and the suite checks what the client
 * got (byte for byte where the bridge must not touch it) and what was recorded (usage, tool calls,
 * errors). Run by test/server/wire-contract.test.ts on every family with fixtures.
 */
export function wireContract(f: WireFamily): void {
  describe(`the wire contract: ${f.type}`, () => {
    let upstream: Listening & { seen: string[] };
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
        const want = await fs.readFile(path.join(dir, c.fixture));
        assert.equal(res.status, c.status ?? 200);
        if (c.expect.bytesExact) assert.ok(got.equals(want), `bytes differ:\n${got}\n---\n${want}`);
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
