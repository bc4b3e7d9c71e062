import assert from 'node:assert/strict';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { verifyChain } from '../../server/core/chain';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { Journal, type JournalWarning } from '../../server/store/embedded/journal';
import type { NewInterception } from '../../server/store/types';
import { tempDir } from '../helpers/bridge';

function record(i: number): NewInterception {
  return {
    id: `int_${i}`,
    userId: 'usr_1',
    userEmail: 'a@example.com',
    team: null,
    keyId: 'key_1',
    provider: 'anthropic',
    api: 'messages',
    model: 'claude-sonnet-4-6',
    client: 'unknown',
    sessionId: null,
    startedAt: new Date(1_700_000_000_000 + i * 1000).toISOString(),
    endedAt: new Date(1_700_000_000_500 + i * 1000).toISOString(),
    durationMs: 500,
    status: 'ok',
    httpStatus: 200,
    streamed: false,
    usage: { input: i, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
    costUsd: null,
    priceKnown: false,
    prompt: `prompt ${i} ✓`,
    toolCalls: [],
    error: null,
    upstreamRequestId: null,
    redactions: [],
  };
}

async function reopen(dir: string): Promise<{ store: EmbeddedStore; warnings: JournalWarning[] }> {
  const warnings: JournalWarning[] = [];
  const store = new EmbeddedStore({ dataDir: dir, onWarning: (w) => warnings.push(w) });
  await store.open();
  return { store, warnings };
}

async function segment(dir: string): Promise<string> {
  const names = (await fs.readdir(path.join(dir, 'interceptions')))
    .filter((n) => n.endsWith('.jsonl'))
    .sort();
  return path.join(dir, 'interceptions', names.at(-1)!);
}

/** Where the journal opens its segments with O_DSYNC (journal.ts): /proc tells the tests its flags. */
const LINUX_DSYNC = process.platform === 'linux' && fsConstants.O_DSYNC !== undefined;

describe('the embedded journal', () => {
  it('group-commits concurrent appends and reads them back in order', async () => {
    const dir = await tempDir();
    const { store } = await reopen(dir);
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.appendInterception(record(i))));
    await store.close();
    const { store: again, warnings } = await reopen(dir);
    const page = await again.listInterceptions({}, 500);
    assert.equal(page.items.length, 200);
    assert.deepEqual(
      page.items.map((r) => r.id),
      Array.from({ length: 200 }, (_, i) => `int_${199 - i}`),
    );
    assert.equal(page.items[0]!.prompt, 'prompt 199 ✓');
    assert.deepEqual(warnings, []);
    const next = await again.appendInterception(record(200));
    assert.equal(next.seq, 201, 'sequence numbers continue after a restart');
    await again.close();
  });

  it('a close waits for the chain-head write already under way, so the next open reads the head it left', async () => {
    const dir = await tempDir();
    const store = new EmbeddedStore({ dataDir: dir, touchFlushMs: 10 });
    await store.open();
    await store.appendInterception(record(0));
    await new Promise((r) => setTimeout(r, 100)); // live.json now holds the head at record 1
    for (let i = 1; i < 6; i++) await store.appendInterception(record(i));
    // The next live.json write is slow to land (a loaded disk), and under way when close is called.
    const realRename = fs.rename;
    fs.rename = async (from, to) => {
      if (String(to).endsWith('live.json')) await new Promise((r) => setTimeout(r, 300));
      return realRename(from, to);
    };
    try {
      await new Promise((r) => setTimeout(r, 50));
      await store.close();
    } finally {
      fs.rename = realRename;
    }
    const { store: again } = await reopen(dir);
    assert.equal((await again.chainHead()).seq, 6);
    await again.close();
  });

  it('reopens after a torn last entry, sets it aside with a warning naming file and offset, keeps every earlier record', async () => {
    const dir = await tempDir();
    const { store } = await reopen(dir);
    for (let i = 0; i < 10; i++) await store.appendInterception(record(i));
    await store.close();
    const file = await segment(dir);
    const goodSize = (await fs.stat(file)).size;
    // A crash mid-write: half an entry and no newline.
    const half = Buffer.from('deadbeef {"id":"int_10","seq":11,"use');
    await fs.appendFile(file, half);

    const { store: again, warnings } = await reopen(dir);
    assert.equal((await again.listInterceptions({}, 100)).items.length, 10);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.file, file);
    assert.equal(warnings[0]!.offset, goodSize);
    assert.match(warnings[0]!.reason, /torn tail/);
    assert.equal((await fs.stat(file)).size, goodSize, 'the torn bytes are cut from the segment');
    assert.deepEqual(await fs.readFile(`${file}.torn-${goodSize}`), half, 'and kept aside for inspection');
    // New appends land after the good entries and survive the next restart.
    await again.appendInterception(record(10));
    await again.close();
    const { store: third, warnings: w3 } = await reopen(dir);
    assert.equal((await third.listInterceptions({}, 100)).items.length, 11);
    assert.deepEqual(w3, []);
    await third.close();
  });

  it('refuses a batch the disk took only part of (a full disk), cuts it off, and loses nothing acknowledged', async () => {
    const dir = await tempDir();
    const { store } = await reopen(dir);
    for (let i = 0; i < 5; i++) await store.appendInterception(record(i));
    const file = await segment(dir);
    const goodSize = (await fs.stat(file)).size;
    // What libuv returns when a write stops part way (ENOSPC after some bytes): a short count, no error.
    const probe = await fs.open(path.join(dir, 'probe'), 'w');
    type Write = (buf: Buffer, offset: number, length: number) => Promise<{ bytesWritten: number }>;
    const proto = Object.getPrototypeOf(probe) as { write: Write };
    await probe.close();
    const real = proto.write;
    proto.write = async function (this: fs.FileHandle, buf: Buffer, offset: number, length: number) {
      return real.call(this, buf, offset, Math.floor(length / 2));
    };
    try {
      const refused = await Promise.allSettled([
        store.appendInterception(record(5)),
        store.appendInterception(record(6)),
      ]);
      assert.deepEqual(
        refused.map((r) => r.status),
        ['rejected', 'rejected'],
        'a record the disk did not take whole is never acknowledged',
      );
    } finally {
      proto.write = real;
    }
    assert.equal((await fs.stat(file)).size, goodSize, 'the partial batch is cut off the segment');
    // The next batch starts on a line of its own, and every acknowledged record survives a restart.
    const last = (await store.listInterceptions({}, 1)).items[0]!;
    const next = await store.appendInterception(record(7));
    assert.equal(next.prevHash, last.hash, 'the chain goes on from the last record on disk');
    assert.equal(next.seq, last.seq + 1, 'and so does its numbering: a refused record leaves no gap');
    await store.close();
    const { store: again, warnings } = await reopen(dir);
    assert.deepEqual(
      (await again.listInterceptions({}, 100)).items.map((r) => r.id),
      ['int_7', 'int_4', 'int_3', 'int_2', 'int_1', 'int_0'],
    );
    assert.deepEqual(warnings, []);
    const report = await verifyChain(again.scanInterceptions({}), await again.chainHead());
    assert.equal(report.ok, true, JSON.stringify(report));
    await again.close();
  });

  it('reads back from memory the records it wrote, across batches that reuse one buffer', async () => {
    const dir = await tempDir();
    const { store } = await reopen(dir);
    // Waves of concurrent appends (a batch each, or a few), records of very different sizes: each
    // batch's lines are encoded where the one before it was, and the ring of recent lines must
    // have copied every line before that.
    const prompt = (i: number): string => `p${i}:${'x'.repeat((i * 7919) % 20_000)}`;
    let i = 0;
    for (let wave = 0; wave < 6; wave++) {
      await Promise.all(
        Array.from({ length: 40 }, () => {
          const n = i++;
          return store.appendInterception({ ...record(n), prompt: prompt(n) });
        }),
      );
    }
    const check = async (s: EmbeddedStore, what: string): Promise<void> => {
      const items = (await s.listInterceptions({}, 500)).items;
      assert.equal(items.length, i);
      for (const rec of items)
        assert.equal(rec.prompt, prompt(Number(rec.id.slice(4))), `${what}: ${rec.id}`);
    };
    await check(store, 'from memory');
    await store.close();
    const { store: again } = await reopen(dir);
    await check(again, 'from disk');
    await again.close();
  });

  it('skips an altered entry in the middle with a warning, and keeps the entries around it', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir });
    await j.open(() => undefined);
    for (let i = 0; i < 5; i++) await j.append(JSON.stringify({ seq: i + 1, n: i }));
    await j.close();
    const file = path.join(dir, 'seg-000001.jsonl');
    const text = await fs.readFile(file, 'utf8');
    const lines = text.split('\n');
    lines[2] = lines[2]!.replace('"n":2', '"n":9'); // checksum no longer matches
    await fs.writeFile(file, lines.join('\n'));
    const warnings: JournalWarning[] = [];
    const seen: number[] = [];
    const j2 = new Journal({ dir, onWarning: (w) => warnings.push(w) });
    await j2.open((v) => seen.push((v as { n: number }).n));
    await j2.close();
    assert.deepEqual(seen, [0, 1, 3, 4]);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.reason, /corrupt entry skipped/);
    assert.equal(warnings[0]!.offset, lines[0]!.length + lines[1]!.length + 2);
  });

  it('reads that start together share one file handle per segment, and close gives them all back', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, segmentBytes: 2048 });
    await j.open(() => undefined);
    const locs = [];
    for (let i = 0; i < 60; i++)
      locs.push(await j.append(JSON.stringify({ seq: i + 1, pad: 'x'.repeat(80) })));
    const segments = new Set(locs.map((l) => l.segment));
    assert.ok(segments.size >= 3, `${segments.size} segments`);
    const openFds = async (): Promise<number> => (await fs.readdir('/proc/self/fd')).length;
    const before = await openFds();
    // Every entry at once, as an export or a verify asks for them.
    const read = await Promise.all(locs.map((l) => j.read(l)));
    assert.deepEqual(
      read.map((v) => (JSON.parse(v!) as { seq: number }).seq),
      locs.map((_, i) => i + 1),
    );
    const during = await openFds();
    assert.ok(
      during - before <= segments.size,
      `${during - before} descriptors for ${segments.size} segments`,
    );
    await j.close();
    assert.ok((await openFds()) <= before - 1, 'the segment being written and every reader are closed');
  });

  it('readMany gives each entry as read would, in the order asked, across segments, gaps and a damaged line', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, segmentBytes: 64 * 1024 });
    await j.open(() => undefined);
    const locs = [];
    // Entries of every size: some far apart (a 70 KB one between), several segments.
    for (let i = 0; i < 200; i++)
      locs.push(
        await j.append(JSON.stringify({ seq: i + 1, pad: 'é'.repeat(i % 37 === 5 ? 35_000 : i % 7) })),
      );
    assert.ok(new Set(locs.map((l) => l.segment)).size >= 3);
    // One line damaged on disk: it alone reads as undefined.
    const bad = locs[120]!;
    const file = path.join(dir, `seg-${String(bad.segment).padStart(6, '0')}.jsonl`);
    const fh = await fs.open(file, 'r+');
    await fh.write(Buffer.from('Z'), 0, 1, bad.offset + 20);
    await fh.close();
    // Asked in no order, one twice, one past the end of its segment.
    const ask = [
      ...locs.slice(150),
      ...locs.slice(0, 150).reverse(),
      locs[3]!,
      { ...locs[199]!, offset: locs[199]!.offset + 10_000 },
    ];
    const one = [];
    for (const l of ask) one.push(await j.read(l));
    const many = await j.readMany(ask);
    assert.deepEqual(many, one);
    assert.equal(many.filter((v) => v === undefined).length, 2);
    assert.equal((JSON.parse(many[0]!) as { seq: number }).seq, 151);
    await j.close();
  });

  it('a next segment that cannot be opened fails its batch, and the next batch opens it, with no gap in the numbers', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, segmentBytes: 300 });
    await j.open(() => undefined);
    const entry = (i: number) => JSON.stringify({ seq: i, pad: 'x'.repeat(100) });
    const first = [await j.append(entry(1)), await j.append(entry(2))];
    assert.deepEqual(
      first.map((l) => l.segment),
      [1, 1],
    );
    // The next segment's name taken by a directory: its open fails, as out of descriptors would.
    const blocker = path.join(
      dir,
      (await fs.readdir(dir)).find((f) => f.endsWith('.jsonl'))!.replace('1', '2'),
    );
    await fs.mkdir(blocker);
    await assert.rejects(j.append(entry(3)));
    await assert.rejects(j.append(entry(4)), 'still not open: tried again, for the same number');
    await fs.rmdir(blocker);
    // Closed while the roll is still owed, a later append opens nothing.
    const closingDir = await tempDir();
    const closing = new Journal({ dir: closingDir, segmentBytes: 300 });
    await closing.open(() => undefined);
    await closing.append(entry(1));
    await closing.append(entry(2));
    const owed = path.join(closingDir, 'seg-000002.jsonl');
    await fs.mkdir(owed);
    await assert.rejects(closing.append(entry(3)));
    await closing.close();
    await fs.rmdir(owed);
    await assert.rejects(closing.append(entry(4)), /journal is closed/);
    assert.equal(closing.isOpen, false);
    const after = await j.append(entry(5));
    assert.equal(after.segment, 2, 'no segment number skipped');
    assert.equal(await j.read(after), entry(5));
    await j.close();
    assert.equal(await entriesIn(dir), 3);
  });

  /** How many entries a journal reopened on `dir` replays. */
  async function entriesIn(dir: string): Promise<number> {
    let n = 0;
    const again = new Journal({ dir });
    await again.open(() => {
      n++;
    });
    await again.close();
    return n;
  }

  /**
   * Counts the journal's durable writes and the time spent in them, while `run` runs: its segment is
   * open with O_DSYNC, so each write of it is one (a write and an `fdatasync` where the platform
   * has no O_DSYNC). Writes of other files are not counted.
   */
  async function watchSyncs<T>(
    run: () => Promise<T>,
  ): Promise<{ result: T; syncs: number; syncMs: number; datasyncs: number }> {
    const probe = await fs.open(path.join(await tempDir(), 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as {
      write: (...args: unknown[]) => Promise<unknown>;
      datasync: () => Promise<void>;
    };
    await probe.close();
    // The journal opens its segments with O_DSYNC on Linux only (journal.ts).
    const dsync = LINUX_DSYNC;
    const method = dsync ? 'write' : 'datasync';
    const original = proto[method] as (...args: unknown[]) => Promise<unknown>;
    const originalDatasync = proto.datasync;
    let syncs = 0;
    let syncMs = 0;
    let datasyncs = 0;
    const counted = async function (this: { fd: number }, ...args: unknown[]): Promise<unknown> {
      const segment = !dsync || (await segmentWithDsync(this.fd));
      const t = performance.now();
      try {
        return await original.apply(this, args);
      } finally {
        if (segment) {
          syncs += 1;
          syncMs += performance.now() - t;
        }
      }
    };
    (proto as Record<string, unknown>)[method] = counted;
    if (dsync)
      proto.datasync = async function (this: unknown): Promise<void> {
        datasyncs += 1;
        return originalDatasync.call(this);
      };
    try {
      return { result: await run(), syncs, syncMs, datasyncs };
    } finally {
      (proto as Record<string, unknown>)[method] = original;
      proto.datasync = originalDatasync;
    }
  }

  /** Whether descriptor `fd` of this process is open with O_DSYNC (Linux: its fdinfo's flags, octal). */
  async function segmentWithDsync(fd: number): Promise<boolean> {
    const info = await fs.readFile(`/proc/self/fdinfo/${fd}`, 'utf8');
    const flags = Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(info)?.[1] ?? '0', 8);
    return (flags & fsConstants.O_DSYNC) !== 0;
  }

  it('opens its segment with O_DSYNC on Linux: each write is durable when it returns, with no fdatasync after it', async function () {
    if (!LINUX_DSYNC) this.skip();
    const dir = await tempDir();
    const j = new Journal({ dir, syncIntervalMs: 0 });
    await j.open(() => undefined);
    const { datasyncs } = await watchSyncs(() => j.append('{"first":true}'));
    assert.equal(datasyncs, 0, 'no fdatasync after an O_DSYNC write');
    const name = (await fs.readdir(dir)).find((n) => n.endsWith('.jsonl'))!;
    const fds = await fs.readdir('/proc/self/fd');
    let found = false;
    for (const fd of fds) {
      const target = await fs.readlink(`/proc/self/fd/${fd}`).catch(() => '');
      if (target !== path.join(dir, name)) continue;
      found = true;
      assert.ok(await segmentWithDsync(Number(fd)), `fd ${fd} of ${name} is open without O_DSYNC`);
    }
    assert.ok(found, 'the segment is open');
    await j.close();
  });

  it('syncIntervalMs 0: each entry is synced as it comes, nothing held for a timer', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, syncIntervalMs: 0 });
    await j.open(() => undefined);
    // One entry at a time, each awaited: each is its own sync, and the time an entry takes is its
    // own write and sync, nothing more (a disk's slow moment is in syncMs, so it cannot fail this).
    const {
      result: wallMs,
      syncs,
      syncMs,
    } = await watchSyncs(async () => {
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) await j.append(JSON.stringify({ i }));
      return performance.now() - t0;
    });
    assert.equal(syncs, 8);
    assert.ok(wallMs - syncMs < 150, `${(wallMs - syncMs).toFixed(1)} ms beyond the syncs themselves`);
    await j.close();
    assert.equal(await entriesIn(dir), 8);
  });

  it('syncIntervalMs 250: entries appended within the interval share one sync; one after a quiet spell is not held', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, syncIntervalMs: 250 });
    await j.open(() => undefined);
    const t0 = performance.now();
    await j.append('{"first":true}');
    assert.ok(performance.now() - t0 < 200, 'the first entry after a quiet spell is written at once');
    // Entries 5 ms apart (well inside the interval, however slow the timers run), each one's
    // durable moment noted.
    const { result: at, syncs } = await watchSyncs(async () => {
      const durable: Promise<number>[] = [];
      for (let i = 0; i < 8; i++) {
        durable.push(j.append(JSON.stringify({ i })).then(() => performance.now()));
        await new Promise((r) => setTimeout(r, 5));
      }
      return Promise.all(durable);
    });
    assert.equal(syncs, 1, `one sync for the eight: ${at.map((t) => (t - t0).toFixed(1)).join(', ')}`);
    assert.ok(at[0]! - t0 >= 250 - 5, 'not before the interval since the last sync started');
    await j.close();
    assert.equal(await entriesIn(dir), 9);
  });

  it('syncIntervalMs: a batch that is due is started by the next entry, which it carries; a lone entry waits at most twice the interval', async () => {
    const dir = await tempDir();
    const interval = 500;
    const j = new Journal({ dir, syncIntervalMs: interval });
    await j.open(() => undefined);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
    const { result, syncs } = await watchSyncs(async () => {
      const t0 = performance.now();
      await j.append('{"a":1}');
      // B comes inside the interval and waits; its timer would start it a further interval on.
      // C comes once the interval has passed (and well before that timer): C starts the batch,
      // and B goes with it, in one write.
      await sleep(20);
      const b = j.append('{"b":1}').then(() => performance.now());
      await sleep(interval + 100 - (performance.now() - t0));
      const cAt = performance.now();
      const c = j.append('{"c":1}').then(() => performance.now());
      const [bDone, cDone] = await Promise.all([b, c]);
      // Then D alone, inside the next interval: nobody starts its batch but the timer.
      const dAt = performance.now();
      const dDone = await j.append('{"d":1}').then(() => performance.now());
      return { cAt, bDone, cDone, dAt, dDone };
    });
    const { cAt, bDone, cDone, dAt, dDone } = result;
    assert.equal(syncs, 3, 'A alone, B and C together, D alone');
    assert.ok(bDone >= cAt && cDone >= cAt, 'B was held until C came');
    assert.ok(dDone - cAt >= interval - 5, 'D not before the interval since the last batch began');
    assert.ok(
      dDone - dAt < 2 * interval + 1000,
      `D durable ${(dDone - dAt).toFixed(0)} ms after it came (twice the interval at most, and a write)`,
    );
    await j.close();
    assert.equal(await entriesIn(dir), 4);
  });

  it('syncIntervalMs: close writes what waits for its interval at once', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, syncIntervalMs: 60_000 });
    await j.open(() => undefined);
    await j.append('{"a":1}');
    const waiting = j.append('{"b":1}');
    const t0 = performance.now();
    await j.close();
    await waiting;
    assert.ok(performance.now() - t0 < 5_000, 'close did not wait for the interval');
    assert.equal(await entriesIn(dir), 2);
  });

  it('rolls over to a new segment past the size cap', async () => {
    const dir = await tempDir();
    const j = new Journal({ dir, segmentBytes: 200 });
    await j.open(() => undefined);
    for (let i = 0; i < 10; i++) await j.append(JSON.stringify({ i, pad: 'x'.repeat(50) }));
    await j.close();
    const names = (await fs.readdir(dir)).sort();
    assert.ok(names.length >= 3, names.join());
    const seen: number[] = [];
    const j2 = new Journal({ dir });
    await j2.open((v) => seen.push((v as { i: number }).i));
    await j2.close();
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});
