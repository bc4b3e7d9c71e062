import assert from 'node:assert/strict';
import http from 'node:http';
import { SCANS_PER_USER } from '../../server/audit/scan-places';
import type { InterceptionFilter } from '../../server/store/types';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge } from '../helpers/bridge';

/**
 * Text search, sessions, tool calls, export and the cache-break report read every record in range from disk. Eight text
 * searches at once over one member's 20,000 records took other members' p99 from 83 ms to 3.6 s;
 * here the store is held instead, so the reads stay open as long as the test says.
 */
describe('reads that walk all of a user’s records (SCANS_PER_USER at a time)', () => {
  let mock: AnthropicMock;
  let tb: TestBridge;
  let heavy: { key: string; user: { id: string } };
  let other: { key: string };
  let release: () => void = () => undefined;
  /** Holds the heavy member's reads again until `release` is called. */
  let arm: () => void = () => undefined;

  before(async () => {
    mock = await new AnthropicMock().start();
    tb = await startBridge(mock.url);
    heavy = await tb.addUser('scan-heavy@example.com');
    other = await tb.addUser('scan-other@example.com');
    // The heavy member's reads wait here until released; everyone else's go through.
    let gate: Promise<void> = Promise.resolve();
    const store = tb.bridge.store;
    const list = store.listInterceptions.bind(store);
    const scan = store.scanInterceptions.bind(store);
    const held = (f: InterceptionFilter) => (f.userId === heavy.user.id ? gate : undefined);
    store.listInterceptions = async (f, limit, cursor) => {
      await held(f);
      return list(f, limit, cursor);
    };
    store.scanInterceptions = async function* (f) {
      await held(f);
      yield* scan(f);
    };
    arm = () => {
      let open!: () => void;
      gate = new Promise<void>((r) => (open = r));
      release = () => {
        open();
        gate = Promise.resolve();
      };
    };
    arm();
  });
  after(async () => {
    release();
    await tb?.close();
    await mock?.stop();
  });

  const get = (route: string, key: string) =>
    fetch(tb.url + route, { headers: { authorization: `Bearer ${key}` } });
  /** The response's status, or 'pending' if it has not come within `ms`. */
  const within = async (p: Promise<Response>, ms = 1000): Promise<number | 'pending'> => {
    const timer = new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms).unref());
    const res = await Promise.race([p, timer]);
    return res === 'pending' ? res : res.status;
  };

  it('refuses a third at once with 429 rate_limited; others, and the same user’s pages, are served; a finished one frees its place', async () => {
    assert.equal(SCANS_PER_USER, 2);
    const first = get('/api/v1/interceptions?q=needle', heavy.key);
    const second = get('/api/v1/sessions', heavy.key);
    assert.equal(await within(first, 200), 'pending');
    assert.equal(await within(second, 200), 'pending');

    const third = get('/api/v1/tool-calls?tool=Bash', heavy.key);
    assert.equal(await within(third), 429);
    const refused = await third;
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'rate_limited');
    assert.equal(await within(get('/api/v1/audit/export', heavy.key)), 429);
    // The cache-break report reads the whole period too.
    assert.equal(await within(get('/api/v1/cache-breaks', heavy.key)), 429);

    // Another member's search is not held by this one's.
    assert.equal(await within(get('/api/v1/interceptions?q=needle', other.key)), 200);

    release();
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
    assert.equal(await within(get('/api/v1/interceptions?q=needle', heavy.key)), 200);
    assert.equal(await within(get('/api/v1/interceptions', heavy.key)), 200);
    assert.equal(await within(get('/api/v1/cache-breaks', heavy.key)), 200);
  });

  it('a search its client hung up on keeps its place until the store has finished reading for it', async () => {
    arm();
    // Two searches whose clients hang up while the store reads for them.
    const hungUp = [0, 1].map(
      () =>
        new Promise<string>((resolve) => {
          const req = http.get(`${tb.url}/api/v1/interceptions?q=needle`, {
            headers: { authorization: `Bearer ${heavy.key}` },
          });
          req.on('error', () => resolve('hung up'));
          setTimeout(() => req.destroy(), 200);
        }),
    );
    assert.deepEqual(await Promise.all(hungUp), ['hung up', 'hung up']);
    await new Promise((r) => setTimeout(r, 100));
    // The store still reads for both: no third.
    assert.equal(await within(get('/api/v1/interceptions?q=needle', heavy.key)), 429);
    release();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await within(get('/api/v1/interceptions?q=needle', heavy.key)), 200);
  });
});
