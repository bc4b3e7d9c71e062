import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { runCli } from '../helpers/cli';

interface Verified {
  ok: boolean;
  checked: number;
  truncated: unknown;
  firstBreak: unknown;
}

/**
 * An admin of the embedded store backs it up while members keep using the bridge, and a bridge
 * started on the copy has everything that was acknowledged before, keys that still work, and an
 * audit chain that verifies (no truncation from a head copied after its journal).
 */
describe('aibridge store backup (a copy of a serving embedded store)', function () {
  this.timeout(60_000);
  let upstream: AnthropicMock;
  let tb: TestBridge;
  let restored: TestBridge | undefined;
  before(async () => {
    upstream = await new AnthropicMock().start();
    tb = await startBridge(upstream.url);
  });
  after(async () => {
    await restored?.close();
    await tb?.close();
    await upstream?.stop();
  });

  it('copies a bridge under load into a store that opens, verifies and serves as it was', async () => {
    const dev = await tb.addUser('backup-dev@example.com');
    for (let i = 0; i < 30; i++) assert.equal((await askMessages(tb.url, dev.key)).status, 200);
    const acknowledged = (await tb.interceptions(30)).map((r) => r.id);
    assert.equal(acknowledged.length, 30);

    let stop = false;
    const load = Array.from({ length: 4 }, async () => {
      let n = 0;
      while (!stop) {
        assert.equal((await askMessages(tb.url, dev.key, { prompt: `load ${n++}` })).status, 200);
      }
      return n;
    });
    const to = path.join(await tempDir(), 'backup');
    const done = await runCli(['store', 'backup', '--data-dir', tb.dataDir, '--to', to]);
    stop = true;
    const sentDuring = (await Promise.all(load)).reduce((a, b) => a + b, 0);
    assert.equal(done.code, 0, done.out);
    assert.match(
      done.out,
      /backed up \d+ files .* restore by starting a bridge on it: aibridge serve --data-dir /,
    );
    assert.ok(sentDuring > 0, 'members were served while the copy was made');

    const names = await fs.readdir(to);
    assert.ok(!names.includes('aibridge.lock'), 'the serving bridge’s lock stays behind');
    for (const secret of ['key-hash.secret', 'admin.key'])
      assert.equal((await fs.stat(path.join(to, secret))).mode & 0o777, 0o600, secret);
    assert.equal((await fs.stat(to)).mode & 0o777, 0o700);

    restored = await startBridge(upstream.url, {}, to);
    assert.ok(!restored.logs.some((l) => /torn|missing at the tail/.test(l)), restored.logs.join(''));
    const verify = await restored.api<Verified>('GET', '/api/v1/audit/verify', restored.adminKey);
    assert.equal(verify.status, 200);
    assert.equal(verify.body.ok, true, JSON.stringify(verify.body));
    assert.equal(verify.body.truncated, null);
    assert.ok(verify.body.checked >= 30);
    const copied = new Set((await restored.interceptions(30)).map((r) => r.id));
    for (const id of acknowledged) assert.ok(copied.has(id), `record ${id} acknowledged before the backup`);
    // The member's key hashes under the copied secret: it still works, and new records chain on.
    assert.equal((await askMessages(restored.url, dev.key)).status, 200);
    const after = await restored.api<Verified>('GET', '/api/v1/audit/verify', restored.adminKey);
    assert.equal(after.body.ok, true, JSON.stringify(after.body));
  });

  it('refuses a target that is not empty or lies inside the data dir, and a dir with no store', async () => {
    const busy = await tempDir();
    await fs.writeFile(path.join(busy, 'something'), 'x');
    const notEmpty = await runCli(['store', 'backup', '--data-dir', tb.dataDir, '--to', busy]);
    assert.equal(notEmpty.code, 2, notEmpty.out);
    assert.match(notEmpty.out, /is not empty: back up into a new directory/);
    assert.equal(await fs.readFile(path.join(busy, 'something'), 'utf8'), 'x', 'nothing there was touched');

    const inside = await runCli([
      'store',
      'backup',
      '--data-dir',
      tb.dataDir,
      '--to',
      path.join(tb.dataDir, 'bk'),
    ]);
    assert.equal(inside.code, 2, inside.out);
    assert.match(inside.out, /is inside the data dir/);
    // The same through a symlink (the data dir's path links elsewhere): it copied the dir into
    // itself, level after level, until the disk was full.
    const link = path.join(await tempDir(), 'data-link');
    await fs.symlink(tb.dataDir, link);
    const viaLink = await runCli([
      'store',
      'backup',
      '--data-dir',
      tb.dataDir,
      '--to',
      path.join(link, 'bk2', 'today'),
    ]);
    assert.equal(viaLink.code, 2, viaLink.out);
    assert.match(viaLink.out, /is inside the data dir/);
    assert.ok(!(await fs.readdir(tb.dataDir)).includes('bk2'), 'nothing was written into the data dir');

    const none = await runCli([
      'store',
      'backup',
      '--data-dir',
      await tempDir(),
      '--to',
      path.join(busy, 'b'),
    ]);
    assert.equal(none.code, 2, none.out);
    assert.match(none.out, /holds no embedded store/);
    const missing = await runCli(['store', 'backup', '--data-dir', tb.dataDir]);
    assert.equal(missing.code, 2, missing.out);
    assert.match(missing.out, /--to/);
  });
});
