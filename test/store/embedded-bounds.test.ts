import assert from 'node:assert/strict';
import { OTHER_MODELS } from '../../server/core/rollup';
import { EmbeddedStore, MODELS_PER_USER_HOUR } from '../../server/store/embedded/embedded-store';
import { MAX_TOOL_SETS } from '../../server/store/embedded/record-index';
import { tempDir } from '../helpers/bridge';
import { newRecord, toolCallNamed } from './contract';

/**
 * What a member's own strings can make the embedded store keep in memory: model names and the
 * names of the tools the model called are the client's, one new per request if it likes.
 */
describe('embedded store: memory a member’s strings cannot grow without bound', function () {
  this.timeout(120_000);

  it('sums a user’s models of an hour past the cap under one bucket, the totals whole, the same after a restart', async () => {
    const dir = await tempDir('aibridge-model-cap-');
    const open = async () => {
      const s = new EmbeddedStore({ dataDir: dir });
      await s.open();
      return s;
    };
    let store = await open();
    const models = MODELS_PER_USER_HOUR + 40;
    const t0 = Date.parse('2026-12-01T10:00:00.000Z');
    // All in one hour, user usr_a, one provider and client; then one more of a model kept apart.
    for (let i = 0; i < models; i++)
      await store.appendInterception(
        newRecord(0, {
          id: `int_m${i}`,
          model: `claude-made-up-${i}`,
          startedAt: new Date(t0 + i * 1000).toISOString(),
          costUsd: 0.01,
          priceKnown: true,
        }),
      );
    await store.appendInterception(
      newRecord(0, {
        id: 'int_again',
        model: 'claude-made-up-3',
        startedAt: new Date(t0 + 500_000).toISOString(),
      }),
    );
    const check = async (s: EmbeddedStore) => {
      const buckets = await s.usageBuckets({
        userId: 'usr_a',
        until: new Date(t0 + 3_600_000).toISOString(),
      });
      assert.equal(buckets.length, MODELS_PER_USER_HOUR + 1);
      const other = buckets.find((b) => b.model === OTHER_MODELS)!;
      assert.equal(other.requests, models - MODELS_PER_USER_HOUR);
      assert.equal(
        buckets.find((b) => b.model === 'claude-made-up-3')!.requests,
        2,
        'a model kept apart keeps its own',
      );
      assert.equal(
        buckets.reduce((n, b) => n + b.requests, 0),
        models + 1,
      );
      assert.ok(Math.abs(buckets.reduce((n, b) => n + b.costUsd, 0) - (models * 0.01 + 0.001)) < 1e-9);
      // Every record is still there under its own model: only the rollups sum.
      assert.equal(
        (await s.listInterceptions({ model: `claude-made-up-${models - 1}` }, 10)).items.length,
        1,
      );
    };
    await check(store);
    // The next hour starts over.
    await store.appendInterception(
      newRecord(0, {
        id: 'int_next',
        model: 'claude-next-hour',
        startedAt: new Date(t0 + 3_600_000).toISOString(),
      }),
    );
    assert.ok((await store.usageBuckets({ userId: 'usr_a' })).some((b) => b.model === 'claude-next-hour'));
    await store.close();
    store = await open();
    try {
      await check(store);
    } finally {
      await store.close();
    }
  });

  it('indexes tool sets up to the cap and still finds, by reading the record, a tool called in a set past it', async () => {
    const store = new EmbeddedStore({ dataDir: await tempDir('aibridge-tool-cap-') });
    await store.open();
    try {
      const at = newRecord(0).startedAt;
      const batch: Promise<unknown>[] = [];
      for (let i = 0; i < MAX_TOOL_SETS + 5; i++)
        batch.push(
          store.appendInterception(
            newRecord(i, { id: `int_t${i}`, toolCalls: [toolCallNamed(`tool_${i}`, at)] }),
          ),
        );
      await Promise.all(batch);
      await store.appendInterception(
        newRecord(0, {
          id: 'int_late',
          toolCalls: [toolCallNamed('Late_Tool', at), toolCallNamed('Bash', at)],
        }),
      );
      await store.appendInterception(
        newRecord(0, { id: 'int_plain', toolCalls: [toolCallNamed('Bash', at)] }),
      );
      const ids = async (tool: string) =>
        (await store.listInterceptions({ tool }, 10)).items.map((r) => r.id).sort();
      assert.deepEqual(await ids('late_tool'), ['int_late']);
      assert.deepEqual(await ids(`tool_${MAX_TOOL_SETS + 4}`), [`int_t${MAX_TOOL_SETS + 4}`]);
      assert.deepEqual(await ids('tool_7'), ['int_t7']);
      assert.deepEqual(await ids('bash'), ['int_late', 'int_plain']);
      assert.deepEqual(await ids('nobody_called_this'), []);
      // Pages are full and end where the matches do, not empty pages with a cursor to follow.
      const page = await store.listInterceptions({ tool: 'bash' }, 1);
      assert.deepEqual([page.items.map((r) => r.id), page.nextCursor !== null], [['int_plain'], true]);
      const next = await store.listInterceptions({ tool: 'bash' }, 1, page.nextCursor!);
      assert.deepEqual([next.items.map((r) => r.id), next.nextCursor], [['int_late'], null]);
      const none = await store.listInterceptions({ tool: 'nobody_called_this' }, 5);
      assert.deepEqual(none, { items: [], nextCursor: null });
    } finally {
      await store.close();
    }
  });
});
