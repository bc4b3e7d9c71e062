import assert from 'node:assert/strict';
import { canonicalIso, hourOf, isoMs } from '../../server/core/rollup';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { seededRandom } from '../helpers/seeded-random';
import { tempDir } from '../helpers/temp-dirs';
import { newRecord } from '../store/contract';

/**
 * hourOf and isoMs read every record's start time on the embedded store's write path, without a
 * parse when the time is in toISOString's form and in the hour last formatted. They must agree with
 * Date.parse on whatever text they get: records' times, and a query's `since` a client wrote.
 */
describe('record times read without a parse (hourOf, isoMs)', () => {
  const slowHour = (iso: string): string => {
    const t = Date.parse(iso);
    return new Date(t - (t % 3_600_000)).toISOString();
  };

  it('agree with Date.parse on times in order, across hours and days, and out of order', () => {
    const random = seededRandom(7);
    let t = Date.parse('2026-12-31T22:58:00.000Z');
    const times: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      t += Math.floor(random() * 2_000);
      times.push(new Date(t).toISOString());
    }
    // A late record from an earlier hour now and then, as finishing order allows.
    for (let i = 0; i < times.length; i += 97) times.splice(i, 0, times[Math.max(0, i - 5_000)]!);
    for (const iso of times) {
      assert.equal(hourOf(iso), slowHour(iso), iso);
      assert.equal(isoMs(iso), Date.parse(iso), iso);
    }
  });

  it('parse what is not in toISOString’s form, or not a time, as Date.parse does', () => {
    hourOf('2026-12-05T01:00:00.000Z');
    for (const text of [
      '2026-12-05T01:30:00+01:00',
      '2026-12-05T01:30:00Z',
      '2026-12-05T01:30:00.0000Z',
      '2026-12-05T01:60:00.000Z',
      '2026-12-05T01:59:60.000Z',
      '2026-12-05T01:3x:00.000Z',
      '2026-12-05T01:30:00.00xZ',
      '2026-12-05T01-30:00.000Z',
      '+275760-09-13T00:00:00.000Z',
    ]) {
      const parsed = Date.parse(text);
      assert.ok(Object.is(isoMs(text), parsed), `${text}: ${isoMs(text)} against ${parsed}`);
      if (!Number.isNaN(parsed)) assert.equal(hourOf(text), slowHour(text), text);
    }
    assert.equal(canonicalIso('2026-12-05T01:30:00.000Z'), true);
    assert.equal(canonicalIso('2026-12-05T01:30:00Z'), false);
  });
});

describe('the embedded store’s rollups, records interleaved', () => {
  it('sum as a grouping of the records does, however models, clients, users and hours alternate', async () => {
    const dir = await tempDir();
    const store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    const random = seededRandom(11);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const expected = new Map<string, { requests: number; input: number; cost: number }>();
    let t = Date.parse('2026-12-05T00:50:00.000Z');
    for (let i = 0; i < 3_000; i++) {
      t += Math.floor(random() * 5_000);
      // Now and then a record from an hour before, as a long stream finishing late is.
      const at = random() < 0.02 ? t - 3_600_000 : t;
      const rec = newRecord(i, {
        userId: pick(['usr_a', 'usr_b', 'usr_c']),
        model: pick(['claude-sonnet-4-6', 'claude-haiku-4-5', null, '']),
        client: pick(['claude-code', 'codex', 'unknown']),
        provider: pick(['anthropic', 'openai']),
        startedAt: new Date(at).toISOString(),
        usage: { input: i, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
        costUsd: 0.5,
        priceKnown: true,
      });
      await store.appendInterception(rec);
      const hour = new Date(at - (at % 3_600_000)).toISOString();
      // The rollups' key: a null model and an empty one are the same model.
      const key = [hour, rec.userId, rec.provider, rec.model ?? '', rec.client].join('|');
      const e = expected.get(key) ?? { requests: 0, input: 0, cost: 0 };
      e.requests++;
      e.input += i;
      e.cost += 0.5;
      expected.set(key, e);
    }
    const got = new Map<string, { requests: number; input: number; cost: number }>();
    for (const b of await store.usageBuckets({})) {
      const key = [b.hour, b.userId, b.provider, b.model ?? '', b.client].join('|');
      assert.ok(!got.has(key), `two buckets for ${key}`);
      got.set(key, { requests: b.requests, input: b.usage.input, cost: b.costUsd });
    }
    assert.deepEqual(got, expected);
    await store.close();
  });
});
