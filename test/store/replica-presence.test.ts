import assert from 'node:assert/strict';
import pg from 'pg';
import { ChangeFeed } from '../../server/store/postgres/change-feed';
import type { StoreChange } from '../../server/store/types';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';
import { testPostgres } from '../helpers/postgres';

interface Envelope {
  from?: string;
  hello?: boolean;
  bye?: boolean;
  change?: StoreChange;
  changes?: StoreChange[];
}

/** Listens on the replicas' channel as an outsider (it never sends, so no replica counts it). */
async function eavesdrop(url: string): Promise<{ heard: Envelope[]; close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  const heard: Envelope[] = [];
  client.on('notification', (m) => {
    if (m.payload) heard.push(JSON.parse(m.payload) as Envelope);
  });
  await client.connect();
  await client.query('LISTEN aibridge_changes');
  return { heard, close: () => client.end() };
}

const carriesEvents = (e: Envelope): boolean =>
  e.change?.kind === 'event' || (e.changes ?? []).some((c) => c.kind === 'event');

/** Any live event will do: the feed does not look inside. */
const anEvent: StoreChange = {
  kind: 'event',
  event: {
    type: 'hello',
    protocolVersion: 1,
    user: { id: 'u', email: 'u@example.com', role: 'member', team: null },
    serverTime: new Date(0).toISOString(),
    heartbeatMs: 1000,
  },
  audience: { userId: null, team: null },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('replicas on PostgreSQL: live events only while another replica is there', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  let dbUrl: string;

  before(async () => {
    mock = await new AnthropicMock().start();
    dbUrl = await (await testPostgres()).createDatabase('presence');
  });
  after(async () => {
    await mock.stop();
  });

  it('a lone replica sends no live events; a second one gets them from its start, and not after it stops', async () => {
    const ear = await eavesdrop(dbUrl);
    const env = { AIBRIDGE_DATABASE_URL: dbUrl };
    const a = await startBridge(mock.url, env);
    let b: TestBridge | undefined;
    try {
      const dev = await a.addUser('alone@example.com');
      // A WebSocket client on the lone replica gets its events: the bus still publishes locally.
      const onA = liveClient(a.url, { key: a.adminKey });
      await onA.next('hello');
      for (let i = 0; i < 10; i++) assert.equal((await askMessages(a.url, dev.key)).status, 200);
      await onA.next('interception.ended', undefined, 5000);
      await onA.close();
      await sleep(100);
      assert.equal(ear.heard.filter(carriesEvents).length, 0, 'no live event sent with nobody to hear it');
      assert.ok(
        ear.heard.some((e) => e.hello),
        'the replica said it was there',
      );

      b = await startBridge(mock.url, env, a.dataDir);
      const onB = liveClient(b.url, { key: a.adminKey });
      try {
        await onB.next('hello');
        // B's hello reaches A through the database a moment after B listens: a request A serves
        // before it heard it is published to nobody. Soon after, A's requests reach B's client.
        // Any of the requests asked so far counts: on a loaded machine one's event can arrive after
        // its 500 ms wait, while the next attempt is waiting, and must not be passed over then.
        const asked = new Set<string | null>();
        const ended = await eventually(
          async () => {
            const res = await askMessages(a.url, dev.key);
            asked.add(res.headers.get('x-aibridge-interception-id'));
            return onB.next('interception.ended', (e) => asked.has(e.interceptionId), 500);
          },
          { what: "A's events on B", timeoutMs: 5000 },
        );
        assert.ok(ended.interceptionId);
      } finally {
        await onB.close();
      }
      // The database tells each listening connection on its own: the outsider may hear A's
      // notification after B has already passed its event on.
      await eventually(async () => ear.heard.some(carriesEvents), {
        what: 'an event-carrying notification on the channel',
        timeoutMs: 5000,
      });

      await b.close();
      b = undefined;
      await eventually(async () => ear.heard.some((e) => e.bye), { what: 'a bye', timeoutMs: 2000 });
      await sleep(50);
      ear.heard.length = 0;
      for (let i = 0; i < 5; i++) assert.equal((await askMessages(a.url, dev.key)).status, 200);
      await sleep(100);
      assert.equal(
        ear.heard.filter(carriesEvents).length,
        0,
        'no live events once the other replica said bye',
      );
    } finally {
      await b?.close();
      await a.close();
      await ear.close();
    }
  });

  it('replaces a listening connection that hears nothing, not even its own hellos (no error raised)', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
    const errors: string[] = [];
    const feed = new ChangeFeed(dbUrl, pool, 'replica-gone-deaf', (err) => errors.push(err.message), {
      presenceMs: 100,
      deafMs: 500,
    });
    const seen: StoreChange[] = [];
    feed.subscribe((c) => seen.push(c));
    await feed.start();
    try {
      // The connection stays open and healthy-looking, but no notification reaches it any more
      // (as a half-open socket after a failover, or a pooler in transaction mode).
      await (feed as unknown as { client: pg.Client }).client.query('UNLISTEN *');
      await eventually(async () => seen.some((c) => c.kind === 'resync' && c.listening), {
        what: 'a new listening connection',
        timeoutMs: 5000,
      });
      assert.ok(
        seen.some((c) => c.kind === 'resync' && !c.listening),
        'caches were told while it was not listening',
      );
      assert.ok(
        errors.some((m) => /heard nothing/.test(m)),
        errors.join('; '),
      );
      // It hears again: another replica's hello arrives.
      await pool.query('SELECT pg_notify($1, $2)', [
        'aibridge_changes',
        JSON.stringify({ from: 'other', hello: true }),
      ]);
      await eventually(async () => feed.hasPeers, { what: 'the other replica heard', timeoutMs: 2000 });
    } finally {
      await feed.stop();
      await pool.end();
    }
  });

  it('does not take a busy pool (its hellos failing) for a deaf listening connection', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
    const errors: string[] = [];
    const feed = new ChangeFeed(dbUrl, pool, 'replica-busy', (err) => errors.push(err.message), {
      presenceMs: 100,
      deafMs: 300,
    });
    const seen: StoreChange[] = [];
    feed.subscribe((c) => seen.push(c));
    await feed.start();
    // Every hello now fails as a checkout from an exhausted pool does.
    const query = pool.query.bind(pool);
    pool.query = (() =>
      Promise.reject(new Error('timeout exceeded when trying to connect'))) as unknown as typeof pool.query;
    try {
      await sleep(1000);
      assert.ok(
        errors.some((m) => /timeout exceeded/.test(m)),
        'the hellos failed',
      );
      assert.ok(!errors.some((m) => /heard nothing/.test(m)), errors.join('; '));
      assert.ok(!seen.some((c) => c.kind === 'resync'), 'the listening connection was kept');
    } finally {
      pool.query = query;
      await feed.stop();
      await pool.end();
    }
  });

  it('answers a newcomer at once, and forgets a replica it stopped hearing from (killed, no bye)', async () => {
    const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
    const ear = await eavesdrop(dbUrl);
    const errors: string[] = [];
    const feed = new ChangeFeed(dbUrl, pool, 'replica-under-test', (err) => errors.push(err.message), {
      presenceMs: 100,
      peerTtlMs: 400,
    });
    const seen: StoreChange[] = [];
    feed.subscribe((c) => seen.push(c));
    await feed.start();
    const talker = new pg.Client({ connectionString: dbUrl });
    await talker.connect();
    try {
      const ghost = JSON.stringify({ from: 'ghost', hello: true });
      const t0 = Date.now();
      await talker.query('SELECT pg_notify($1, $2)', ['aibridge_changes', ghost]);
      await eventually(async () => seen.some((c) => c.kind === 'peers' && c.present), {
        what: 'peers present',
        timeoutMs: 2000,
      });
      assert.equal(feed.hasPeers, true);
      // Answered with its own hello well before the next periodic one would be due for a newcomer.
      await eventually(async () => ear.heard.some((e) => e.from === 'replica-under-test' && e.hello), {
        what: 'an answer',
        timeoutMs: 1000,
      });
      // A listener that subscribes now hears at once that peers are there.
      const late: StoreChange[] = [];
      feed.subscribe((c) => late.push(c));
      assert.deepEqual(late, [{ kind: 'peers', present: true }]);
      // Events go out now.
      feed.notify(anEvent);
      await eventually(async () => ear.heard.some(carriesEvents), { what: 'an event sent', timeoutMs: 1000 });

      // The ghost says nothing more: gone after the TTL, and events stop.
      await eventually(async () => seen.some((c) => c.kind === 'peers' && !c.present), {
        what: 'peers gone',
        timeoutMs: 3000,
      });
      assert.ok(Date.now() - t0 >= 400, 'not forgotten before its time');
      assert.equal(feed.hasPeers, false);
      ear.heard.length = 0;
      feed.notify(anEvent);
      await sleep(150);
      assert.equal(ear.heard.filter(carriesEvents).length, 0);
      assert.deepEqual(errors, []);
    } finally {
      await talker.end();
      await feed.stop();
      await pool.end();
      await ear.close();
    }
  });

  it('sends rate counts and response owners only while every replica there says it reads them', async () => {
    const ear = await eavesdrop(dbUrl);
    const pool = new pg.Pool({ connectionString: dbUrl, max: 2 });
    const feed = new ChangeFeed(dbUrl, pool, 'replica-newer', undefined, { presenceMs: 60_000 });
    const hello = (from: string, kinds?: string[]) =>
      pool.query('SELECT pg_notify($1, $2)', [
        'aibridge_changes',
        JSON.stringify({ from, hello: true, ...(kinds ? { kinds } : {}) }),
      ]);
    const sentNow = async (mark: string): Promise<boolean> => {
      const from = ear.heard.length;
      feed.notify({ kind: 'rate', counts: [[mark, 1, 0]] });
      feed.notify({ kind: 'response', id: `resp_${mark}`, userId: 'usr_x' });
      // The response change waits for the live events' batch (20 ms).
      await sleep(150);
      const mine = ear.heard.slice(from).filter((e) => e.from === 'replica-newer');
      const kinds = mine.flatMap((e) => [...(e.change ? [e.change] : []), ...(e.changes ?? [])]);
      const rate = kinds.some((c) => c.kind === 'rate' && c.counts[0]?.[0] === mark);
      const response = kinds.some((c) => c.kind === 'response' && c.id === `resp_${mark}`);
      assert.equal(rate, response, 'both kinds are gated alike');
      return rate;
    };
    try {
      await feed.start();
      assert.equal(await sentNow('alone'), false, 'nobody there to hear them');
      await hello('peer-new', ['rate', 'response', 'gateway']);
      await eventually(async () => feed.hasPeers, { what: 'the new peer heard', timeoutMs: 2000 });
      assert.equal(await sentNow('new-peer'), true);
      // A replica of an earlier version: its hello lists nothing, and it would log each as unhandled.
      await hello('peer-old');
      await sleep(100);
      assert.equal(await sentNow('old-peer'), false);
      // It goes; the newer one stays.
      await pool.query('SELECT pg_notify($1, $2)', [
        'aibridge_changes',
        JSON.stringify({ from: 'peer-old', bye: true }),
      ]);
      await sleep(100);
      assert.equal(await sentNow('old-gone'), true);
    } finally {
      await feed.stop();
      await pool.end();
      await ear.close();
    }
  });
});
