import assert from 'node:assert/strict';
import path from 'node:path';
import { type Child, call, startWorker, stop } from '../../bench/lib/procs';
import { tempDirSync } from '../helpers/temp-dirs';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * `npm run bench`'s audit phase (bench/audit-cost.ts) writes a journal of records and opens the
 * embedded store on it, as a bridge restarting on a full data dir does. The bench runs outside
 * the suite; this keeps its worker working with the store (a store check it did not meet once
 * failed the whole bench at its end).
 */
describe('the bench: its audit-cost worker', function () {
  this.timeout(60_000);
  let worker: Child | undefined;

  after(async () => {
    if (worker) await stop(worker);
  });

  it('writes a journal, opens the store on it (which refuses records without a db.json), and appends after it', async () => {
    worker = startWorker('audit-cost', path.join(ROOT, 'bench/audit-cost.ts'));
    const dir = path.join(tempDirSync('aibridge-bench-audit-'), 'audit');
    const prepared = await call<{ records: number; journalBytes: number }>(
      worker,
      { kind: 'prepare', dir, records: 2_000, template: null },
      undefined,
      30_000,
    );
    assert.equal(prepared.records, 2_000);
    assert.ok(prepared.journalBytes > 2_000 * 300, `journal of ${prepared.journalBytes} bytes`);
    const block = await call<{ total: number[] }>(worker, { kind: 'block', count: 3 });
    assert.equal(block.total.length, 3);
    await call(worker, { kind: 'close' });
  });
});
