import assert from 'node:assert/strict';
import pino from 'pino';
import { type InterceptionEnd, Recorder, WRITE_STALL_MS } from '../../server/audit/recorder';
import type { InterceptionStart } from '../../server/core/facts';
import { Metrics } from '../../server/metrics';
import { PriceBook } from '../../server/spend/prices';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { NewInterception } from '../../server/store/types';
import { tempDir } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';

function start(id: string): InterceptionStart {
  const now = new Date();
  return {
    id,
    principal: {
      user: { id: 'usr_1', email: 'a@example.com', team: null, role: 'member', createdAt: now.toISOString() },
      key: { id: 'key_1', userId: 'usr_1', createdAt: now.toISOString() },
    } as unknown as InterceptionStart['principal'],
    provider: 'anthropic',
    api: 'messages',
    client: 'unknown',
    request: {
      model: 'claude-sonnet-4-6',
      prompt: 'hi',
      sessionId: null,
      maxOutputTokens: 16,
      toolResults: [],
      newMessages: [],
    },
    startedAt: now,
  };
}

const end: InterceptionEnd = {
  status: 'ok',
  error: null,
  httpStatus: 200,
  streamed: false,
  endedAt: new Date(),
  response: null,
  upstreamRequestId: null,
};

/** A recorder over a store that only appends, as `append` says; retries every `retryMs`. */
function recorderOver(
  append: (rec: NewInterception) => Promise<void>,
  failMode: 'open' | 'closed',
  retryMs: number,
): Recorder {
  const store = { appendInterception: append } as unknown as EmbeddedStore;
  return new Recorder(store, pino({ level: 'silent' }), new PriceBook(), new Metrics(), {
    failMode,
    retryMs,
    retryLimit: 100,
  });
}

describe('the recorder hands records to the store in the order they finished', () => {
  it('a record annotated at once waits behind one whose annotation is still being looked up; after them, it is stored at once', async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    const order: string[] = [];
    const append = store.appendInterception.bind(store);
    store.appendInterception = (rec: NewInterception) => {
      order.push(rec.id);
      return append(rec);
    };
    const recorder = new Recorder(store, pino({ level: 'silent' }), new PriceBook(), new Metrics());
    // Ids ending in "slow" need a store look-up (a promise); the others are answered at once. One
    // that throws is stored as it is.
    recorder.annotateWith((rec) => {
      if (rec.id.endsWith('boom')) throw new Error('annotation failed');
      if (!rec.id.endsWith('slow')) return { ...rec, prompt: `${rec.prompt} (at once)` };
      return new Promise((r) => setTimeout(() => r({ ...rec, prompt: `${rec.prompt} (looked up)` }), 50));
    });
    const stored = [
      recorder.finish(start('int_1_slow'), end),
      recorder.finish(start('int_2'), end),
      recorder.finish(start('int_3_boom'), end),
      recorder.finish(start('int_4_slow'), end),
      recorder.finish(start('int_5'), end),
    ];
    assert.deepEqual(order, [], 'nothing overtakes the record still being annotated');
    await Promise.all(stored);
    assert.deepEqual(order, ['int_1_slow', 'int_2', 'int_3_boom', 'int_4_slow', 'int_5']);

    // Nothing queued any more: a record answered at once goes to the store within finish().
    const last = recorder.finish(start('int_6'), end);
    assert.deepEqual(order.slice(5), ['int_6']);
    await last;
    const page = await store.listInterceptions({}, 10);
    const prompts = Object.fromEntries(page.items.map((r) => [r.id, r.prompt]));
    assert.equal(prompts.int_1_slow, 'hi (looked up)');
    assert.equal(prompts.int_2, 'hi (at once)');
    assert.equal(prompts.int_3_boom, 'hi');
    assert.equal(prompts.int_6, 'hi (at once)');
    await store.close();
  });
});

describe('the recorder retries refused records once each, in one loop', () => {
  it('a record refused while a retry waits on a slow store is neither stored twice nor lost, and drain waits for the loop', async () => {
    // The first write is refused; every later one takes longer than the retry interval.
    const stored: string[] = [];
    let calls = 0;
    const recorder = recorderOver(
      (rec) => {
        calls++;
        if (calls === 1) return Promise.reject(new Error('database away'));
        return new Promise((resolve) =>
          setTimeout(() => {
            stored.push(rec.id);
            resolve();
          }, 150),
        );
      },
      'open',
      20,
    );
    await recorder.finish(start('int_a'), end);
    assert.equal(recorder.auditState().queued, 1);
    // The retry of int_a starts after 20 ms and takes 150; int_b queues behind it meanwhile, and
    // its retry timer fires while the first loop still waits.
    await new Promise((r) => setTimeout(r, 40));
    await recorder.finish(start('int_b'), end);
    await new Promise((r) => setTimeout(r, 60));
    await recorder.drain();
    assert.deepEqual(stored, ['int_a', 'int_b']);
    assert.equal(recorder.auditState().queued, 0);
  });
});

describe('a record the store refuses for what it holds', () => {
  it('is set aside after a few tries, so the records behind it are stored and requests are served again', async () => {
    const stored: string[] = [];
    const recorder = recorderOver(
      (rec) => {
        if (rec.id === 'int_bad')
          return Promise.reject(
            Object.assign(new Error('invalid byte sequence for encoding "UTF8"'), { code: '22021' }),
          );
        stored.push(rec.id);
        return Promise.resolve();
      },
      'closed',
      10,
    );
    await recorder.finish(start('int_bad'), end);
    await recorder.finish(start('int_good'), end);
    assert.equal(recorder.accepting(), false, 'closed: refused while a record waits');
    await eventually(() => recorder.accepting(), { what: 'the queue to empty', timeoutMs: 2000 });
    assert.deepEqual(stored, ['int_good']);
    assert.equal(recorder.auditState().dropped, 1);
  });

  it('an outage or a full disk is waited out, never set aside', async () => {
    let down = true;
    const stored: string[] = [];
    const recorder = recorderOver(
      (rec) => {
        if (down) return Promise.reject(Object.assign(new Error('could not extend file'), { code: '53100' }));
        stored.push(rec.id);
        return Promise.resolve();
      },
      'closed',
      10,
    );
    await recorder.finish(start('int_waits'), end);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(recorder.auditState().queued, 1);
    assert.equal(recorder.auditState().dropped, 0);
    down = false;
    await eventually(() => recorder.accepting(), { what: 'the queue to empty', timeoutMs: 2000 });
    assert.deepEqual(stored, ['int_waits']);
  });

  it('records the store still refuses when the bridge stops are counted (aibridge serve exits 1) and named by id', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (l: string) => lines.push(l) });
    const store = {
      appendInterception: () =>
        Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })),
    } as unknown as EmbeddedStore;
    const recorder = new Recorder(store, log, new PriceBook(), new Metrics(), {
      failMode: 'closed',
      retryMs: 10,
      retryLimit: 100,
    });
    await recorder.finish(start('int_lost_1'), end);
    await recorder.finish(start('int_lost_2'), end);
    await recorder.drain();
    assert.equal(recorder.unrecordedAtClose, 2);
    const line = JSON.parse(lines.find((l) => l.includes('shutting down with audit records'))!) as {
      ids: string[];
      records: number;
    };
    assert.deepEqual([line.records, line.ids.sort()], [2, ['int_lost_1', 'int_lost_2']]);
  });

  it('closed: a store that neither takes nor refuses a write (a paused database) stops new requests once the oldest write has waited past the acknowledgement wait', async () => {
    let release: (() => void) | undefined;
    const hung = new Promise<void>((r) => {
      release = r;
    });
    const recorderFor = (failMode: 'open' | 'closed') => recorderOver(() => hung, failMode, 10);
    const closed = recorderFor('closed');
    const open = recorderFor('open');
    // Not awaited: what finish returns settles with the write.
    const writes = [closed.finish(start('int_hung'), end), open.finish(start('int_hung_open'), end)];
    await new Promise((r) => setImmediate(r));
    assert.equal(closed.accepting(), true, 'a write under way is not yet a stall');
    await new Promise((r) => setTimeout(r, WRITE_STALL_MS + 100));
    assert.equal(closed.accepting(), false);
    assert.equal(open.accepting(), true, 'open serves on');
    release!();
    await Promise.all(writes);
    assert.equal(closed.accepting(), true);
  });
});
