import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { UsageBucket } from '../../server/core/rollup';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { FILE } from '../../server/store/embedded/pruned-rollups';
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
    const third = await reopened(dir);
    try {
      assert.deepEqual(totals(await third.usageBuckets({})), before, 'after two prunes and two restarts');
    } finally {
      await third.close();
    }
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
    const third = await reopened(dir);
    try {
      assert.deepEqual(totals(await third.usageBuckets({})), before);
    } finally {
      await third.close();
    }
  });

  it('a line torn by a crash mid-write is skipped with a warning: its records, not yet deleted, roll up from the journal', async () => {
    const dir = await tempDir('aibridge-pruned-torn-');
    const { store, cutoff } = await filled(dir);
    const before = totals(await store.usageBuckets({}));
    const segDir = path.join(dir, 'interceptions');
    const saved = new Map(segments(dir).map((f) => [f, fs.readFileSync(path.join(segDir, f))]));
    await store.pruneInterceptions(cutoff);
    await store.close();
    for (const [f, bytes] of saved)
      if (!fs.existsSync(path.join(segDir, f))) fs.writeFileSync(path.join(segDir, f), bytes);
    const file = path.join(dir, FILE);
    const whole = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, whole.slice(0, Math.floor(whole.length / 2)));
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
});
