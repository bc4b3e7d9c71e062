import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { LOCK_FILE } from '../../server/store/embedded/dir-lock';
import { EmbeddedStore, type EmbeddedStoreOptions } from '../../server/store/embedded/embedded-store';
import { Journal } from '../../server/store/embedded/journal';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, tempDir } from '../helpers/bridge';
import { newRecord } from './contract';

/** A new data dir with an embedded store open on it. */
async function openStore(
  prefix: string,
  opts: Omit<EmbeddedStoreOptions, 'dataDir'> = {},
): Promise<{ dir: string; store: EmbeddedStore }> {
  const dir = await tempDir(prefix);
  const store = new EmbeddedStore({ dataDir: dir, ...opts });
  await store.open();
  return { dir, store };
}

/**
 * A change the embedded store could not write (a full disk, a data dir gone) must not be in force:
 * in force until a restart and then lost, a key revoked on a full disk worked again afterwards.
 * db.json's temporary file made a directory stands in for the disk refusing the write.
 */
describe('embedded store: an admin change the disk refuses', function () {
  this.timeout(60_000);
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(async () => {
    await mock.stop();
  });

  it('answers 503 store_unavailable, changes nothing, and a retry once the disk takes writes is kept across a restart', async () => {
    const dir = await tempDir('aibridge-refused-write-');
    const tb = await startBridge(mock.url, {}, dir);
    const blocker = path.join(dir, 'db.json.tmp');
    let member: { key: string; keyId: string };
    try {
      member = await tb.addUser('member@example.com');
      await fs.mkdir(blocker);

      const revoke = await tb.api<{ error: { code: string; message: string } }>(
        'DELETE',
        `/api/v1/keys/${member.keyId}`,
        tb.adminKey,
      );
      assert.equal(revoke.status, 503);
      assert.equal(revoke.headers.get('x-aibridge-error-code'), 'store_unavailable');
      assert.match(revoke.body.error.message, /nothing was changed/);
      // Not revoked in memory either: what the admin was told is what is in force.
      assert.equal((await tb.api('GET', '/api/v1/me', member.key)).status, 200);

      const create = await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'lost@example.com' });
      assert.equal(create.status, 503);
      const users = (await tb.api<{ items: { email: string }[] }>('GET', '/api/v1/users', tb.adminKey)).body;
      assert.ok(!JSON.stringify(users).includes('lost@example.com'));

      await fs.rmdir(blocker);
      assert.equal((await tb.api('DELETE', `/api/v1/keys/${member.keyId}`, tb.adminKey)).status, 200);
      assert.equal((await tb.api('GET', '/api/v1/me', member.key)).status, 401);
      assert.equal(
        (await tb.api('POST', '/api/v1/users', tb.adminKey, { email: 'lost@example.com' })).status,
        201,
      );
    } finally {
      await tb.close();
    }
    const again = await startBridge(mock.url, {}, dir);
    try {
      assert.equal((await again.api('GET', '/api/v1/me', member.key)).status, 401);
      const users = (await again.api('GET', '/api/v1/users', again.adminKey)).body;
      assert.ok(JSON.stringify(users).includes('lost@example.com'));
    } finally {
      await again.close();
    }
  });
});

describe('embedded store: admin changes the disk refuses, made at once', () => {
  it('leave memory as the disk has it, whatever order their undos would run in', async () => {
    const { dir, store } = await openStore('aibridge-refused-together-');
    try {
      await store.createUser({ id: 'u_a', email: 'a@example.com', role: 'member' } as never);
      await store.createKey({ id: 'key_a', userId: 'u_a', hash: 'h_a', revokedAt: null } as never);
      await fs.mkdir(path.join(dir, 'db.json.tmp'));
      const both = await Promise.allSettled([
        store.updateUser('u_a', { role: 'admin' }),
        store.updateUser('u_a', { role: 'member' }),
        store.revokeKey('key_a', new Date().toISOString()),
        store.revokeKey('key_a', new Date().toISOString()),
      ]);
      assert.deepEqual(
        both.map((r) => r.status),
        ['rejected', 'rejected', 'rejected', 'rejected'],
        'a second revocation is refused too, not told the first one’s undone change is done',
      );
      assert.equal((await store.getUserById('u_a'))?.role, 'member');
      assert.equal((await store.getKey('key_a'))?.revokedAt, null);
      await fs.rmdir(path.join(dir, 'db.json.tmp'));
      assert.ok((await store.revokeKey('key_a', new Date().toISOString()))?.revokedAt);
    } finally {
      await store.close();
    }
  });
});

describe('embedded store: an admin change is in force when it is made', () => {
  it('while another write is under way, so a caller’s check and its change have nothing between them', async () => {
    const { store } = await openStore('aibridge-change-at-once-');
    try {
      const writing = store.putDoc('price', 'm', { model: 'm' });
      const made = store.createUser({ id: 'u_a', email: 'A@example.com' } as never);
      // What the identity service checks before it creates a user of that email.
      assert.equal((await store.getUserByEmail('a@example.com'))?.id, 'u_a');
      // A user that cannot be indexed (no email) is refused whole, not left half-made.
      await assert.rejects(store.createUser({ id: 'u_bad' } as never));
      assert.equal(await store.getUserById('u_bad'), undefined);
      // A document that cannot be written is refused to its caller alone.
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      await assert.rejects(store.putDoc('price', 'cyclic', cyclic));
      await Promise.all([writing, made, store.putDoc('price', 'n', { model: 'n' })]);
      assert.equal((await store.listDocs('price')).length, 2);
    } finally {
      await store.close();
    }
    await assert.rejects(store.putDoc('price', 'late', {}), /stopping/);
  });
});

describe('embedded store: a write whose rename is done', () => {
  it('is not taken back when only the directory’s sync fails: memory stays what the file holds', async () => {
    const { dir, store } = await openStore('aibridge-dir-sync-');
    const open = fs.open;
    try {
      await store.createKey({ id: 'key_a', userId: 'u_a', hash: 'h_a', revokedAt: null } as never);
      fs.open = (async (...args: Parameters<typeof open>) => {
        if (args[0] === dir) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        return open(...args);
      }) as typeof open;
      const at = new Date().toISOString();
      assert.equal((await store.revokeKey('key_a', at))?.revokedAt, at);
      fs.open = open;
      const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8')) as {
        keys: { revokedAt: string }[];
      };
      assert.equal(db.keys[0]!.revokedAt, at);
    } finally {
      fs.open = open;
      await store.close();
    }
  });
});

describe('embedded store: admin changes and a close', () => {
  it('a close waits for the changes already made, so what was answered is on disk', async () => {
    const { dir, store } = await openStore('aibridge-close-changes-');
    const made = Array.from({ length: 50 }, (_, i) => store.putDoc('price', `m${i}`, { model: `m${i}` }));
    await store.close();
    // On disk when the close returns, before anyone awaits the changes themselves.
    const db = JSON.parse(await fs.readFile(path.join(dir, 'db.json'), 'utf8')) as {
      docs: { price: object };
    };
    assert.equal(Object.keys(db.docs.price).length, 50);
    await Promise.all(made);
  });
});

describe('embedded store: a data dir that changed under it', function () {
  this.timeout(30_000);

  it('a journal segment removed from the data dir fails the next writes (within a second) and the store reports it, where writes reached nothing', async () => {
    const { dir, store } = await openStore('aibridge-removed-segment-');
    try {
      await store.appendInterception(newRecord(0));
      assert.deepEqual(await store.health(), { ok: true });
      for (const name of await fs.readdir(path.join(dir, 'interceptions')))
        await fs.rm(path.join(dir, 'interceptions', name));
      await new Promise((r) => setTimeout(r, 1100));
      await assert.rejects(store.appendInterception(newRecord(1)), /journal segment was removed/);
      const health = await store.health();
      assert.equal(health.ok, false);
      assert.match(health.detail ?? '', /audit journal write failing: journal segment was removed/);
    } finally {
      await store.close().catch(() => undefined);
    }
  });

  it('a data dir with records but no db.json is refused at start, not begun afresh under a new admin', async () => {
    const { dir, store } = await openStore('aibridge-no-db-');
    await store.createUser({ id: 'u_a', email: 'a@example.com' } as never);
    await store.appendInterception(newRecord(0));
    await store.close();
    await fs.rm(path.join(dir, 'db.json'));
    await assert.rejects(
      new EmbeddedStore({ dataDir: dir }).open(),
      /db\.json is missing, but the data dir holds audit records/,
    );
    // A new data dir, or one with only what a first start leaves before any record, still starts.
    await (await openStore('aibridge-fresh-')).store.close();
  });

  it('a db.json in a later format than this version reads is refused at start', async () => {
    const { dir, store } = await openStore('aibridge-future-db-');
    await store.createUser({ id: 'u_a', email: 'a@example.com' } as never);
    await store.close();
    const file = path.join(dir, 'db.json');
    await fs.writeFile(file, JSON.stringify({ ...JSON.parse(await fs.readFile(file, 'utf8')), version: 99 }));
    await assert.rejects(
      new EmbeddedStore({ dataDir: dir }).open(),
      /is in format 99, written by a newer bridge/,
    );
  });

  it('a journal told to write nothing more refuses what is waiting as well as what comes after', async () => {
    const dir = await tempDir('aibridge-journal-refuse-');
    const journal = new Journal({ dir });
    await journal.open(() => undefined);
    try {
      const first = journal.append('{"n":1}');
      const waiting = journal.append('{"n":2}');
      journal.refuse(new Error('data dir lock lost: test'));
      await first;
      await assert.rejects(waiting, /lock lost/);
      await assert.rejects(journal.append('{"n":3}'), /lock lost/);
      const lines = (await fs.readFile(path.join(dir, 'seg-000001.jsonl'), 'utf8')).trim().split('\n');
      assert.equal(lines.length, 1);
    } finally {
      await journal.close();
    }
  });

  it('a store whose data dir lock another process took writes nothing more and says so', async () => {
    const lost: string[] = [];
    const { dir, store } = await openStore('aibridge-lock-lost-', {
      onLockLost: (reason) => lost.push(reason),
    });
    try {
      await store.appendInterception(newRecord(0));
      // Deleted by hand (as the refusal's message once offered without a caveat) and taken by another.
      await fs.rm(path.join(dir, LOCK_FILE));
      const deadline = Date.now() + 15_000;
      while (lost.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(lost, [`${LOCK_FILE} was removed`]);
      await assert.rejects(store.appendInterception(newRecord(1)));
      await assert.rejects(
        store.createUser({ id: 'u_x', email: 'x@example.com' } as never),
        /its lock was lost/,
      );
      assert.match((await store.health()).detail ?? '', /data dir lock lost/);
    } finally {
      await store.close().catch(() => undefined);
    }
  });
});
