import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
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

/**
 * Leaves a take-over marker `ageMs` old, as a process that died mid-take-over would: the form
 * older versions made (a file) or the current one (a directory holding its holder's token file).
 */
async function markerOf(dir: string, form: 'file' | 'dir', ageMs: number): Promise<string> {
  const marker = path.join(dir, `${LOCK_FILE}.takeover`);
  const at = new Date(Date.now() - ageMs);
  if (form === 'file') {
    await fs.writeFile(marker, 'x');
    await fs.utimes(marker, at, at);
  } else {
    await fs.mkdir(marker);
    await fs.writeFile(path.join(marker, 'f00d'), 'x');
    await fs.utimes(path.join(marker, 'f00d'), at, at);
    await fs.utimes(marker, at, at);
  }
  return marker;
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

  it('a live holder that is the very process that locked (its start time matches) is never taken over, however old its heartbeat', async () => {
    const dir = await tempDir();
    // The parent of this process, paused (SIGSTOP, a debugger) past the 30 s: still the holder.
    const stat = readFileSync(`/proc/${process.ppid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
    const parent = {
      host: os.hostname(),
      pidns: readlinkSync('/proc/self/ns/pid'),
      pid: process.ppid,
      processStart: btime * 1000 + ticks * 10 + 300,
    };
    await lockOf(dir, parent, 120_000);
    await assert.rejects(DataDirLock.acquire(dir), /in use by another bridge \(pid \d+ on /);
  });

  it('a holder that has exited but is not yet reaped (a zombie) is taken over at once', async () => {
    const dir = await tempDir();
    // sh's background child exits at once; sh became `sleep`, which never reaps it: a zombie.
    const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 10'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const pid = Number((await once(parent.stdout!, 'data'))[0].toString().trim());
      const state = async () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[0];
      for (let i = 0; i < 100 && (await state()) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await state(), 'Z');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))![1]);
      await lockOf(dir, {
        host: os.hostname(),
        pidns: readlinkSync('/proc/self/ns/pid'),
        pid,
        processStart: btime * 1000 + ticks * 10,
      });
      await (await DataDirLock.acquire(dir)).release();
    } finally {
      parent.kill();
    }
  });

  it('a holder whose lock file is removed or taken hears it once, at its next heartbeat', async () => {
    const dir = await tempDir();
    const lost: string[] = [];
    const lock = await DataDirLock.acquire(dir, 40, (reason) => lost.push(reason));
    await lockOf(dir, { pid: 1, host: 'other', processStart: 1 });
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(lost, [`${LOCK_FILE} now names another process`]);
    await lock.release();
    const again = await tempDir();
    const gone: string[] = [];
    const second = await DataDirLock.acquire(again, 40, (reason) => gone.push(reason));
    await fs.rm(path.join(again, LOCK_FILE));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(gone, [`${LOCK_FILE} was removed`]);
    await second.release();
  });

  it('of several processes taking over one stale lock at once, one gets it', async () => {
    // Many rounds: the race this guards (a slow taker moving aside the lock a fast one just made,
    // a third creating its own in the gap) shows only in some interleavings.
    for (let round = 0; round < 30; round++) {
      const dir = await tempDir();
      await lockOf(dir, { pid: 1, host: `not-${os.hostname()}`, processStart: 1 }, 60_000);
      // Every other round, a marker abandoned by a crash as well: all of them judge it at once, and
      // one that removed more than the marker it judged would let two take over.
      if (round % 2 === 1) await markerOf(dir, round % 4 === 1 ? 'file' : 'dir', 60_000);
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

  it('the staging directory of a starter that crashed mid-take-over is removed by the next holder, a fresh one kept', async () => {
    const dir = await tempDir();
    const staging = (token: string, ageMs: number) => async () => {
      const p = path.join(dir, `${LOCK_FILE}.takeover.${token}`);
      await fs.mkdir(p);
      await fs.writeFile(path.join(p, token), 'x');
      const at = new Date(Date.now() - ageMs);
      await fs.utimes(p, at, at);
    };
    await staging('dead', 60_000)();
    await staging('live', 0)();
    const lock = await DataDirLock.acquire(dir);
    assert.deepEqual((await fs.readdir(dir)).sort(), [LOCK_FILE, `${LOCK_FILE}.takeover.live`]);
    await lock.release();
  });

  it('a take-over marker left by a crash 5 s ago is waited out, not reported as a live holder', async function () {
    this.timeout(30_000);
    // The crashed take-over left both its marker and the lock it was taking over (a pid now gone).
    const here = { host: os.hostname(), pidns: readlinkSync('/proc/self/ns/pid'), processStart: 1 };
    await Promise.all(
      (['file', 'dir'] as const).map(async (form) => {
        const dir = await tempDir();
        await lockOf(dir, { ...here, pid: 2 ** 22 + 7 });
        await markerOf(dir, form, 5_000);
        const started = Date.now();
        const lock = await DataDirLock.acquire(dir);
        assert.ok(Date.now() - started >= 4_000, `${form}: waited until the marker was abandoned`);
        await lock.release();
        assert.deepEqual(await fs.readdir(dir), [], `${form}: nothing left behind`);
      }),
    );
  });

  it('a starter that judged a marker abandoned removes only that one, never the marker another has just made', async function () {
    this.timeout(30_000);
    // P3 judges the abandoned marker by its age and is slowed down before removing it; meanwhile P2
    // clears it, makes its own and takes over. P3 must not remove P2's marker: a third starter
    // could then make one and take over beside P2, and of the two, one removes the lock the other
    // has just made (two holders). The fs calls are held at those points through fs/promises,
    // which dir-lock calls at run time.
    type Call = (...a: unknown[]) => Promise<unknown>;
    const fsp = fs as unknown as { stat: Call; readFile: Call };
    const real = { stat: fsp.stat, readFile: fsp.readFile };
    try {
      for (const form of ['file', 'dir'] as const) {
        const dir = await tempDir();
        const file = path.join(dir, LOCK_FILE);
        await lockOf(dir, { pid: 1, host: `not-${os.hostname()}`, processStart: 1 }, 60_000);
        const marker = await markerOf(dir, form, 60_000);
        const freshMarker = () => {
          try {
            return Date.now() - statSync(marker).mtimeMs < 5_000;
          } catch {
            return false;
          }
        };
        let p3Judged: () => void = () => undefined;
        const p3HasJudged = new Promise<void>((r) => {
          p3Judged = r;
        });
        let resumeP3: () => void = () => undefined;
        const p3Resumes = new Promise<void>((r) => {
          resumeP3 = r;
        });
        let gatedOnce = false;
        fsp.stat = async (...a: unknown[]) => {
          const st = (await real.stat.apply(fs, a)) as { mtimeMs: number };
          if (!gatedOnce && String(a[0]).startsWith(marker) && Date.now() - st.mtimeMs > 10_000) {
            gatedOnce = true;
            p3Judged();
            await p3Resumes;
          }
          return st;
        };
        // A read of the lock while a fresh marker exists is held (after reading) until let go:
        // a process slowed down between judging the lock and removing it.
        let held = 0;
        const releases: Array<() => void> = [];
        fsp.readFile = async (...a: unknown[]) => {
          const text = await real.readFile.apply(fs, a);
          if (String(a[0]) === file && freshMarker()) {
            held++;
            await new Promise<void>((r) => releases.push(r));
            held--;
          }
          return text;
        };
        const p3 = DataDirLock.acquire(dir).then(
          (l) => ({ ok: true as const, l }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        await p3HasJudged;
        const p2 = DataDirLock.acquire(dir).then(
          (l) => ({ ok: true as const, l }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        // P2 has made its marker and is inside its take-over.
        while (releases.length === 0) await new Promise((r) => setTimeout(r, 5));
        const p2Marker = await fs.readdir(marker).catch(() => readFileSync(marker, 'utf8'));
        resumeP3();
        await new Promise((r) => setTimeout(r, 300));
        const markerNow = await fs
          .readdir(marker)
          .catch(() => (existsSync(marker) ? readFileSync(marker, 'utf8') : null));
        // Let everyone go, P2 first, so that a second taker (if any) acts on what P2 has made.
        while (releases.length > 0 || held > 0) {
          releases.shift()?.();
          await new Promise((r) => setTimeout(r, 50));
        }
        const [r2, r3] = await Promise.all([p2, p3]);
        for (const r of [r2, r3]) if (r.ok) await r.l.release();
        assert.deepEqual(markerNow, p2Marker, `${form}: P2's marker is still there after P3 went on`);
        assert.equal([r2, r3].filter((r) => r.ok).length, 1, `${form}: one holder`);
        for (const r of [r2, r3]) if (!r.ok) assert.ok(r.e instanceof DataDirLockedError, String(r.e));
      }
    } finally {
      fsp.stat = real.stat;
      fsp.readFile = real.readFile;
    }
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
