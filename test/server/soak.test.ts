import assert from 'node:assert/strict';
import { tempDir } from '../helpers/bridge';
import { soak } from '../helpers/soak-driver';

/** The short CI version of `npm run soak`: a few thousand mixed requests, no leaked sockets or descriptors. */
describe('a short soak', function () {
  this.timeout(180_000);

  it('leaks no sockets or file descriptors under mixed traffic with aborts and faults', async () => {
    const { samples, statuses } = await soak({
      requests: 3000,
      concurrency: 16,
      sampleEvery: 500,
      dataDir: await tempDir('aibridge-soak-'),
    });
    assert.ok((statuses['200'] ?? 0) > 2000, JSON.stringify(statuses));
    assert.ok((statuses['529'] ?? 0) > 0, 'upstream faults were part of the mix');
    assert.equal(statuses.error ?? 0, 0, `client-side errors: ${JSON.stringify(statuses)}`);
    // Connection pools (client and upstream) settle at a size that depends on timing; a leak grows
    // with the 300 aborted streams and 600 faults, far past this slack.
    const first = samples[1]!;
    const last = samples.at(-1)!;
    const slack = 10;
    assert.ok(last.sockets <= first.sockets + slack, `sockets grew: ${JSON.stringify(samples)}`);
    assert.ok(last.fds <= first.fds + slack, `descriptors grew: ${JSON.stringify(samples)}`);
  });
});
