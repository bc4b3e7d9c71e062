import assert from 'node:assert/strict';
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

  it('a holder on this host that is alive keeps it; one whose process is gone, or whose pid is now another process, does not', async () => {
    const dir = await tempDir();
    const host = os.hostname();
    // The parent of this process (mocha's runner or the shell): alive, not us.
    await lockOf(dir, { pid: process.ppid, host, processStart: 1 });
    await assert.rejects(DataDirLock.acquire(dir), /in use by another bridge \(pid \d+ on /);
    // A pid no process has.
    await lockOf(dir, { pid: 2 ** 22 + 7, host, processStart: 1 });
    await (await DataDirLock.acquire(dir)).release();
    // Our own pid written by an earlier process (a container restarted: its pid 1 again).
    await lockOf(dir, { pid: process.pid, host, processStart: 1 });
    await (await DataDirLock.acquire(dir)).release();
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
