import assert from 'node:assert/strict';
import { RecentLines } from '../../server/store/embedded/recent-lines';
import { seededRandom } from '../helpers/seeded-random';

/** A line whose bytes say which seq it is, so a line read back under the wrong seq shows. */
function lineFor(seq: number, length: number): Buffer {
  const b = Buffer.alloc(length, seq % 251);
  b.writeUInt32LE(seq, 0);
  return b;
}

describe('the embedded store’s ring of recent journal lines', () => {
  it('keeps the newest lines, each read back as it was, through many laps of its ring', () => {
    const bytes = 64 * 1024;
    const ring = new RecentLines(100, bytes);
    const random = seededRandom(21);
    const kept: { seq: number; line: Buffer }[] = [];
    let totalBytes = 0;
    for (let seq = 1; seq <= 20_000; seq++) {
      // Mostly small lines, some up to the largest kept (a quarter of the ring).
      const length =
        random() < 0.9 ? 8 + Math.floor(random() * 600) : 8 + Math.floor(random() * (bytes / 4 - 8));
      const line = lineFor(seq, length);
      ring.keep(seq, line);
      kept.push({ seq, line });
      assert.ok(ring.size <= 100);
      // What is there is a run of the newest lines, each exactly as given.
      let newest = true;
      let runBytes = 0;
      for (let i = kept.length - 1; i >= Math.max(0, kept.length - 150); i--) {
        const k = kept[i]!;
        const got = ring.read(k.seq, (b) => Buffer.from(b));
        if (got === undefined) {
          newest = false;
          continue;
        }
        assert.ok(newest, `line ${k.seq} is kept but a newer one is not`);
        assert.ok(got.equals(k.line), `line ${k.seq} read back changed`);
        runBytes += k.line.length;
      }
      // The ring is not wasted: short of its count, the newest lines fill at least a quarter of it
      // (a lap can end with up to a quarter unused, and a new line can take out another quarter).
      totalBytes += length;
      assert.ok(
        ring.size === 100 || runBytes >= Math.min(totalBytes, bytes / 4),
        `only ${runBytes} bytes in ${ring.size} lines kept`,
      );
    }
  });

  it('does not keep a line longer than a quarter of the ring, and keeps the others', () => {
    const ring = new RecentLines(10, 4096);
    ring.keep(1, lineFor(1, 100));
    ring.keep(2, lineFor(2, 1025));
    ring.keep(3, lineFor(3, 1024));
    assert.equal(
      ring.read(2, (b) => b.length),
      undefined,
    );
    assert.equal(
      ring.read(1, (b) => b.readUInt32LE(0)),
      1,
    );
    assert.equal(
      ring.read(3, (b) => b.readUInt32LE(0)),
      3,
    );
  });

  it('keeps at most its count of lines, and forgets pruned ones', () => {
    const ring = new RecentLines(5, 1024 * 1024);
    for (let seq = 1; seq <= 12; seq++) ring.keep(seq, lineFor(seq, 50));
    assert.equal(ring.size, 5);
    assert.deepEqual(
      [...Array(12).keys()].map((i) => ring.read(i + 1, (b) => b.readUInt32LE(0)) ?? null),
      [null, null, null, null, null, null, null, 8, 9, 10, 11, 12],
    );
    ring.dropThrough(10);
    assert.equal(ring.size, 2);
    assert.equal(
      ring.read(10, (b) => b.length),
      undefined,
    );
    assert.equal(
      ring.read(11, (b) => b.readUInt32LE(0)),
      11,
    );
    ring.dropThrough(100);
    assert.equal(ring.size, 0);
    ring.keep(13, lineFor(13, 50));
    assert.equal(
      ring.read(13, (b) => b.readUInt32LE(0)),
      13,
    );
  });
});
