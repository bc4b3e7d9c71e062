import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { UsageBucket } from '../../server/core/rollup';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { FILE, PrunedRollups } from '../../server/store/embedded/pruned-rollups';
import type { NewInterception } from '../../server/store/types';
import { tempDir } from '../helpers/bridge';
import { newRecord } from './contract';

const DAY = 86_400_000;

interface Totals {
  requests: number;
  costUsd: number;
  input: number;
  byUser: Record<string, number>;
}

function totals(buckets: UsageBucket[]): Totals {
  const t: Totals = { requests: 0, costUsd: 0, input: 0, byUser: {} };
  for (const b of buckets) {
    t.requests += b.requests;
    t.costUsd += b.costUsd;
    t.input += b.usage.input;
    t.byUser[b.userId] = Math.round(((t.byUser[b.userId] ?? 0) + b.costUsd) * 1e6) / 1e6;
  }
  t.costUsd = Math.round(t.costUsd * 1e6) / 1e6;
  return t;
}

/** 60 records 40 days ago, then 20 from yesterday, in 4 KB segments (retention drops whole ones). */
async function filled(dir: string): Promise<{ store: EmbeddedStore; cutoff: string }> {
  const store = new EmbeddedStore({ dataDir: dir, segmentBytes: 4096 });
  await store.open();
  const now = Date.now();
  const at = (i: number, daysAgo: number): Partial<NewInterception> => {
    const t = new Date(now - daysAgo * DAY + i * 1000).toISOString();
    return { startedAt: t, endedAt: t, prompt: `record ${i} ${'y'.repeat(300)}` };
  };
  for (let i = 0; i < 60; i++) await store.appendInterception(newRecord(i, at(i, 40)));
  for (let i = 60; i < 80; i++) await store.appendInterception(newRecord(i, at(i, 1)));
  return { store, cutoff: new Date(now - 30 * DAY).toISOString() };
}

function segments(dir: string): string[] {
  return fs
    .readdirSync(path.join(dir, 'interceptions'))
    .filter((f) => f.endsWith('.jsonl'))
    .sort();
}

/**
 * Prunes, closes, and puts the deleted segments back: as a crash between keeping the pruned
 * records' rollups and deleting them leaves the data dir.
 */
async function pruneCutShort(
  dir: string,
  store: EmbeddedStore,
  cutoff: string,
): Promise<{ pruned: number; left: string[] }> {
  const segDir = path.join(dir, 'interceptions');
  const saved = new Map(segments(dir).map((f) => [f, fs.readFileSync(path.join(segDir, f))]));
  const pruned = await store.pruneInterceptions(cutoff);
  const left = segments(dir);
  await store.close();
  for (const [f, bytes] of saved)
    if (!fs.existsSync(path.join(segDir, f))) fs.writeFileSync(path.join(segDir, f), bytes);
  return { pruned, left };
}

/** Reopens the store and checks its usage totals are `before`'s. */
async function sameTotalsAfterRestart(dir: string, before: Totals, what?: string): Promise<void> {
  const store = await reopened(dir);
  try {
    assert.deepEqual(totals(await store.usageBuckets({})), before, what);
  } finally {
    await store.close();
  }
}

/** Cuts pruned-rollups.jsonl in half, as a crash mid-write leaves it; returns a function that does it again. */
function tearPrunedRollups(dir: string): () => void {
  const file = path.join(dir, FILE);
  const whole = fs.readFileSync(file, 'utf8');
  const tear = (): void => fs.writeFileSync(file, whole.slice(0, Math.floor(whole.length / 2)));
  tear();
  return tear;
}

async function reopened(dir: string, warnings: string[] = []): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({
    dataDir: dir,
    segmentBytes: 4096,
    onWarning: (w) => warnings.push(`${path.basename(w.file)}: ${w.reason}`),
  });
  await store.open();
  return store;
}

describe('the embedded store keeps the rollups of records retention pruned (pruned-rollups.jsonl)', function () {
  this.timeout(30_000);

  it('usage of a period longer than the retention window (what budget spend is rebuilt from) survives a restart', async () => {
    const dir = await tempDir('aibridge-pruned-rollups-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    const pruned = await store.pruneInterceptions(cutoff);
    assert.ok(pruned >= 40 && pruned <= 60, `pruned ${pruned}`);
    assert.deepEqual(totals(await store.usageBuckets({})), before, 'unchanged while it runs');
    await store.close();

    const again = await reopened(dir);
    try {
      assert.equal((await again.listInterceptions({}, 500)).items.length, 80 - pruned);
      // Before: only the kept records' rollups came back, and a month's budget spend with them.
      assert.deepEqual(totals(await again.usageBuckets({})), before);
      assert.deepEqual(
        totals(await again.usageBuckets({ userId: 'usr_a' })).byUser,
        { usr_a: before.byUser.usr_a },
        "a member's own usage too",
      );
      // A second prune adds only what it drops, and a third finds nothing more to add.
      const more = await again.pruneInterceptions(new Date().toISOString());
      assert.ok(more > 0);
      await again.pruneInterceptions(new Date().toISOString());
      assert.deepEqual(totals(await again.usageBuckets({})), before);
    } finally {
      await again.close();
    }
    await sameTotalsAfterRestart(dir, before, 'after two prunes and two restarts');
  });

  it('a crash between keeping the rollups and deleting the records counts them once', async () => {
    const dir = await tempDir('aibridge-pruned-crash-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    const segDir = path.join(dir, 'interceptions');
    const saved = new Map(segments(dir).map((f) => [f, fs.readFileSync(path.join(segDir, f))]));
    await store.pruneInterceptions(cutoff);
    await store.close();
    // The segments are back, as if the crash came before they were deleted.
    for (const [f, bytes] of saved)
      if (!fs.existsSync(path.join(segDir, f))) fs.writeFileSync(path.join(segDir, f), bytes);
    const again = await reopened(dir);
    try {
      assert.deepEqual(totals(await again.usageBuckets({})), before, 'not doubled');
      // The next prune deletes them without keeping their rollups a second time.
      await again.pruneInterceptions(cutoff);
    } finally {
      await again.close();
    }
    await sameTotalsAfterRestart(dir, before);
  });

  it('a line torn by a crash mid-write is skipped with a warning: its records, not yet deleted, roll up from the journal', async () => {
    const dir = await tempDir('aibridge-pruned-torn-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    await pruneCutShort(dir, store, cutoff);
    tearPrunedRollups(dir);
    const warnings: string[] = [];
    const again = await reopened(dir, warnings);
    try {
      assert.deepEqual(totals(await again.usageBuckets({})), before);
      assert.ok(
        warnings.some((w) => w.startsWith(`${FILE}: line 1 is not a whole entry`)),
        warnings.join('\n'),
      );
    } finally {
      await again.close();
    }
  });

  it('a prune after a torn line keeps its own: the torn tail is not glued to the next group', async () => {
    const dir = await tempDir('aibridge-pruned-torn-next-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    await pruneCutShort(dir, store, cutoff);
    const tear = tearPrunedRollups(dir);
    // The file is kept torn at open here (a read-only moment), as a crash right after open would.
    const again = await reopened(dir);
    try {
      tear();
      assert.ok((await again.pruneInterceptions(cutoff)) > 0, 'the same records pruned again');
    } finally {
      await again.close();
    }
    await sameTotalsAfterRestart(dir, before);
  });

  it('a prune whose rollups cannot be written deletes nothing', async () => {
    const dir = await tempDir('aibridge-pruned-unwritable-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    const kept = segments(dir);
    // Stands in for a disk that refuses the write: the file's name is a directory.
    fs.mkdirSync(path.join(dir, FILE));
    await assert.rejects(store.pruneInterceptions(cutoff));
    assert.deepEqual(segments(dir), kept, 'every segment is still there');
    assert.equal((await store.listInterceptions({}, 500)).items.length, 80);
    await store.close();
    fs.rmdirSync(path.join(dir, FILE));
    await sameTotalsAfterRestart(dir, before);
  });

  it('a prune cut short between its rollups and its deletion is finished at open: the records are gone, counted once', async () => {
    const dir = await tempDir('aibridge-pruned-finish-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    const { pruned, left } = await pruneCutShort(dir, store, cutoff);
    const again = await reopened(dir);
    try {
      assert.deepEqual(segments(dir), left, 'the segments the prune had taken are deleted again');
      assert.equal((await again.listInterceptions({}, 500)).items.length, 80 - pruned);
      assert.deepEqual(totals(await again.usageBuckets({})), before);
    } finally {
      await again.close();
    }
  });

  it('is compacted at open: one group, hours older than two months folded into their day, the totals unchanged', async () => {
    const dir = await tempDir('aibridge-pruned-fold-');
    const store = new EmbeddedStore({ dataDir: dir, segmentBytes: 4096 });
    await store.open();
    const day = Date.UTC(2026, 5, 10);
    // Records over twelve hours of one day 100+ days ago, then some of yesterday.
    for (let i = 0; i < 48; i++) {
      const t = new Date(day + (i % 12) * 3_600_000 + i * 1000).toISOString();
      await store.appendInterception(newRecord(i, { startedAt: t, endedAt: t, prompt: 'y'.repeat(300) }));
    }
    for (let i = 48; i < 60; i++) {
      const t = new Date(Date.now() - DAY + i * 1000).toISOString();
      await store.appendInterception(newRecord(i, { startedAt: t, endedAt: t, prompt: 'y'.repeat(300) }));
    }
    const before = totals(await store.usageBuckets({}));
    await store.pruneInterceptions(new Date(Date.now() - 30 * DAY).toISOString());
    await store.pruneInterceptions(new Date(Date.now() - 30 * DAY).toISOString());
    await store.close();
    const again = await reopened(dir);
    try {
      assert.deepEqual(totals(await again.usageBuckets({})), before);
      const old = await again.usageBuckets({ until: new Date(day + DAY).toISOString() });
      assert.ok(old.length > 0);
      assert.deepEqual(
        [...new Set(old.map((b) => b.hour))],
        [new Date(day).toISOString()],
        'kept by the day',
      );
    } finally {
      await again.close();
    }
    const lines = fs.readFileSync(path.join(dir, FILE), 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 1, 'one group');
  });

  it('a group of more lines than one counts only once its last line is whole', async () => {
    const dir = await tempDir('aibridge-pruned-lines-');
    const file = new PrunedRollups(dir);
    const bucket = (i: number): UsageBucket => ({
      hour: new Date(Date.UTC(2026, 10, 1) + i * 3_600_000).toISOString(),
      userId: `usr_${i % 7}`,
      userEmail: 'x@example.com',
      team: null,
      provider: 'anthropic',
      model: 'claude-sonnet-4-6',
      client: 'claude-code',
      requests: 1,
      usage: { input: 1, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
      costUsd: 0.5,
      unpricedRequests: 0,
      userBilledCostUsd: 0,
      userBilledRequests: 0,
    });
    await file.append(10, [bucket(0)]);
    await file.append(
      99,
      Array.from({ length: 25_000 }, (_, i) => bucket(i + 1)),
    );
    const text = fs.readFileSync(file.file, 'utf8');
    assert.equal(text.trimEnd().split('\n').length, 4, 'one line, then three for the large group');
    const whole = await file.load(0);
    assert.equal(whole.throughSeq, 99);
    assert.equal(whole.buckets.length, 25_001);
    // The large group's last line torn: the whole group is left out, the first group counts.
    fs.writeFileSync(file.file, text.slice(0, text.length - 100));
    const torn = await file.load(0);
    assert.equal(torn.throughSeq, 10);
    assert.equal(torn.buckets.length, 1);
    assert.equal(torn.compactable, true);
    // Cut at a line's end instead (the group's whole first lines, never its last), then the prune
    // tried again: those lines are not taken for the new group's.
    const lines = text.trimEnd().split('\n');
    fs.writeFileSync(file.file, `${lines.slice(0, 3).join('\n')}\n`);
    await file.append(99, [bucket(30_000)]);
    const retried = await file.load(0);
    assert.equal(retried.throughSeq, 99);
    assert.deepEqual(
      retried.buckets.map((b) => b.hour).sort(),
      [bucket(0).hour, bucket(30_000).hour].sort(),
      'the first group and the retried one, nothing of the group cut short',
    );
  });
});
