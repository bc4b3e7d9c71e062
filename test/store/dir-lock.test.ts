import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DataDirLock, DataDirLockedError, LOCK_FILE } from '../../server/store/embedded/dir-lock';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/bridge';

/** Writes a lock file as another process would have, its mtime `ageMs` ago. */
async function lockOf(dir: string, holder: Record<string, unknown>, ageMs = 0): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  await fs.writeFile(file, `${JSON.stringify({ lockedAt: new Date().toISOString(), ...holder })}\n`);
  const at = new Date(Date.now() - ageMs);
  await fs.utimes(file, at, at);
}

describe('the embedded store holds its data dir alone (dir-lock)', () => {
  it('a second store on the same dir in this process is refused until the first closes', async () => {
    const dir = await tempDir();
    const a = new EmbeddedStore({ dataDir: dir });
    await a.open();
    await assert.rejects(new EmbeddedStore({ dataDir: dir }).open(), DataDirLockedError);
    await a.close();
    const b = new EmbeddedStore({ dataDir: dir });
    await b.open();
    await b.close();
  });

  it('a holder in this pid namespace whose process is gone, or that is this pid but an earlier process, is taken over at once', async () => {
    const dir = await tempDir();
    const here = { host: os.hostname(), pidns: readlinkSync('/proc/self/ns/pid'), processStart: 1 };
    // The parent of this process: alive, and its heartbeat fresh.
    await lockOf(dir, { ...here, pid: process.ppid });
    await assert.rejects(DataDirLock.acquire(dir), /in use by another bridge \(pid \d+ on /);
    // A pid no process has.
    await lockOf(dir, { ...here, pid: 2 ** 22 + 7 });
    await (await DataDirLock.acquire(dir)).release();
    // Our own pid written by an earlier process.
    await lockOf(dir, { ...here, pid: process.pid });
    await (await DataDirLock.acquire(dir)).release();
  });

  it('a live pid with a stopped heartbeat (reused after a reboot) is taken over after 30 s; a pid from another namespace is judged by its heartbeat only', async () => {
    const dir = await tempDir();
    const here = { host: os.hostname(), pidns: readlinkSync('/proc/self/ns/pid'), processStart: 1 };
    await lockOf(dir, { ...here, pid: process.ppid }, 31_000);
    await (await DataDirLock.acquire(dir)).release();
    // Another container with the same host name: its pid 2^22+7 means nothing here.
    const elsewhere = { ...here, pidns: 'pid:[1]', pid: 2 ** 22 + 7 };
    await lockOf(dir, elsewhere, 5_000);
    await assert.rejects(DataDirLock.acquire(dir), DataDirLockedError);
    await lockOf(dir, elsewhere, 31_000);
    await (await DataDirLock.acquire(dir)).release();
  });

  it('of several processes taking over one stale lock at once, one gets it', async () => {
    // Many rounds: the race this guards (a slow taker moving aside the lock a fast one just made,
    // a third creating its own in the gap) shows only in some interleavings.
    for (let round = 0; round < 30; round++) {
      const dir = await tempDir();
      await lockOf(dir, { pid: 1, host: `not-${os.hostname()}`, processStart: 1 }, 60_000);
      const tries = await Promise.allSettled(Array.from({ length: 6 }, () => DataDirLock.acquire(dir)));
      const won = tries.filter((t) => t.status === 'fulfilled');
      assert.equal(won.length, 1, `round ${round}: ${tries.map((t) => t.status).join()}`);
      for (const t of tries)
        if (t.status === 'rejected') assert.ok(t.reason instanceof DataDirLockedError, String(t.reason));
      await (won[0] as PromiseFulfilledResult<DataDirLock>).value.release();
      assert.deepEqual(await fs.readdir(dir), [], 'no take-over marker or moved-aside lock is left behind');
    }
  });

  it('a take-over marker abandoned by a crash mid-take-over does not block later take-overs', async () => {
    const dir = await tempDir();
    await lockOf(dir, { pid: 1, host: `not-${os.hostname()}`, processStart: 1 }, 60_000);
    const marker = path.join(dir, `${LOCK_FILE}.takeover`);
    await fs.writeFile(marker, 'x');
    const old = new Date(Date.now() - 11_000);
    await fs.utimes(marker, old, old);
    await (await DataDirLock.acquire(dir)).release();
  });

  it('the heartbeat renews the lock while it is this process’s, and stops once it is not', async () => {
    const dir = await tempDir();
    const file = path.join(dir, LOCK_FILE);
    const lock = await DataDirLock.acquire(dir, 40);
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(file, old, old);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(Date.now() - (await fs.stat(file)).mtimeMs < 5_000, 'renewed');
    await lockOf(dir, { pid: 1, host: 'other', processStart: 1 }, 60_000);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(Date.now() - (await fs.stat(file)).mtimeMs > 50_000, 'another holder’s lock is not kept fresh');
    await lock.release();
    assert.match(await fs.readFile(file, 'utf8'), /"host":"other"/, 'nor removed');
  });

  it('a holder on another host (a shared volume) keeps it while its heartbeat is fresh; 30 s without one frees it', async () => {
    const dir = await tempDir();
    const other = { pid: 1, host: `not-${os.hostname()}`, processStart: 1 };
    await lockOf(dir, other, 5_000);
    await assert.rejects(DataDirLock.acquire(dir), /on not-/);
    await lockOf(dir, other, 31_000);
    const lock = await DataDirLock.acquire(dir);
    const now = JSON.parse(await fs.readFile(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
    assert.equal(now.pid, process.pid);
    await lock.release();
    await assert.rejects(fs.access(path.join(dir, LOCK_FILE)), /ENOENT/);
  });

  it('a lock file cut short is judged by its age', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, LOCK_FILE), '{"pid":');
    await assert.rejects(DataDirLock.acquire(dir), /cannot be read/);
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(path.join(dir, LOCK_FILE), old, old);
    await (await DataDirLock.acquire(dir)).release();
  });
});
