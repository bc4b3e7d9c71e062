import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { Alert } from '../../shared/spend';
import { tempDir } from '../helpers/bridge';
import { newRecord } from './contract';

function alert(i: number): Alert {
  return {
    id: `al_${i}`,
    kind: 'anomaly',
    rule: 'request_burst',
    at: new Date(Date.UTC(2026, 2, 2, 10, 0, i)).toISOString(),
    userId: 'usr_1',
    userEmail: 'a@example.com',
    team: null,
    observed: 10,
    baseline: 1,
    unit: 'requests',
    message: `burst ${i}`,
    budgetId: null,
  };
}

/**
 * What changes under load (the chain head, keys' last use) is written to the small live.json, and
 * alerts to alerts.json: db.json, which holds every user, key and document, is rewritten only when
 * one of those changes, so its size never costs the request path (docs/performance.md#small-side-files).
 */
describe('the embedded store keeps what changes under load out of db.json', () => {
  it('records and key use leave db.json alone; the head and last use come back from live.json and key-use.json', async () => {
    const dir = await tempDir();
    const store = new EmbeddedStore({ dataDir: dir, touchFlushMs: 20 });
    await store.open();
    await store.createUser({
      id: 'usr_1',
      email: 'a@example.com',
      name: null,
      team: null,
      role: 'member',
      createdAt: new Date().toISOString(),
    });
    await store.createKey({
      id: 'key_1',
      userId: 'usr_1',
      name: null,
      prefix: 'aibr_x',
      createdAt: new Date().toISOString(),
      expiresAt: null,
      revokedAt: null,
      lastUsedAt: null,
      hash: 'h'.repeat(64),
    });
    const db = path.join(dir, 'db.json');
    const before = await fs.readFile(db, 'utf8');
    for (let i = 1; i <= 20; i++) {
      await store.appendInterception(newRecord(i));
      store.touchKey('key_1', `2026-03-02T10:00:${String(i).padStart(2, '0')}.000Z`);
    }
    const head = await store.chainHead();
    assert.equal(head.seq, 20);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await fs.readFile(db, 'utf8'), before, 'db.json was not rewritten');
    const live = JSON.parse(await fs.readFile(path.join(dir, 'live.json'), 'utf8'));
    assert.deepEqual(live.chainHead, head);
    const use = JSON.parse(await fs.readFile(path.join(dir, 'key-use.json'), 'utf8'));
    assert.deepEqual(use.lastUsed, { key_1: '2026-03-02T10:00:20.000Z' });
    await store.close();

    const again = new EmbeddedStore({ dataDir: dir });
    await again.open();
    assert.deepEqual(await again.chainHead(), head);
    assert.equal((await again.getKey('key_1'))?.lastUsedAt, '2026-03-02T10:00:20.000Z');
    await again.close();
  });

  it('alerts go to alerts.json; a data dir whose db.json holds them (and the head) still opens with both', async () => {
    const dir = await tempDir();
    const first = new EmbeddedStore({ dataDir: dir });
    await first.open();
    for (let i = 1; i <= 3; i++) await first.appendInterception(newRecord(i));
    const head = await first.chainHead();
    await first.close();
    // As an older version left it: alerts and the head in db.json, no live.json or alerts.json.
    const db = path.join(dir, 'db.json');
    const old = { version: 1, users: [], keys: [], alerts: [alert(1), alert(2)], chainHead: head };
    await fs.writeFile(db, JSON.stringify(old));
    await fs.rm(path.join(dir, 'live.json'), { force: true });

    const store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    assert.deepEqual(await store.chainHead(), head);
    assert.deepEqual(
      (await store.listAlerts({ limit: 10 })).map((a) => a.id),
      ['al_2', 'al_1'],
    );
    assert.equal(JSON.parse(await fs.readFile(db, 'utf8')).alerts, undefined, 'moved out of db.json');
    const before = await fs.readFile(db, 'utf8');
    await store.appendAlert(alert(3));
    assert.equal(await fs.readFile(db, 'utf8'), before, 'a new alert leaves db.json alone');
    await store.close();

    const again = new EmbeddedStore({ dataDir: dir });
    await again.open();
    assert.deepEqual(
      (await again.listAlerts({ limit: 10 })).map((a) => a.id),
      ['al_3', 'al_2', 'al_1'],
    );
    await again.close();
  });

  it('a burst of changes joins one file write: 200 document writes at once, a few renames, every one on disk', async () => {
    const dir = await tempDir();
    const store = new EmbeddedStore({ dataDir: dir });
    await store.open();
    const rename = fs.rename;
    let renames = 0;
    fs.rename = (async (...args: Parameters<typeof rename>) => {
      renames++;
      return rename(...args);
    }) as typeof rename;
    try {
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => store.putDoc('price', `m${i}`, { model: `m${i}` })),
      );
    } finally {
      fs.rename = rename;
    }
    assert.ok(renames <= 3, `${renames} file writes for 200 changes`);
    const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8'));
    assert.equal(Object.keys(db.docs.price).length, 200);
    await store.close();
  });
});
