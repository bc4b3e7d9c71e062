import assert from 'node:assert/strict';
import { tempDir } from '../helpers/bridge';
import { ATTACKS, hostileSoak, hostileSoakProblems } from '../helpers/hostile-soak';

/**
 * The short CI version of `npm run soak -- --hostile` (docs/security.md#hostile-soak): about 25 s
 * of wall time. Runs the built bridge (`npm run build`).
 */
describe('a short hostile soak', function () {
  this.timeout(120_000);

  it("members with valid keys attacking the bridge leave other members' p99 within 2x and refuse them nothing", async () => {
    const result = await hostileSoak({
      phaseMs: 8000,
      normalUsers: 4,
      hostileUsers: 3,
      dataDir: await tempDir('aibridge-hostile-soak-'),
      websockets: 200,
      slowSockets: 50,
      maxHostileRequests: 20,
      requestTimeoutMs: 15_000,
    });
    assert.deepEqual(Object.keys(result.attacks).sort(), [...ATTACKS].sort(), 'every attack ran');
    // p99 within max(2x baseline, baseline + 100 ms): loopback baselines are a few ms, and a loaded
    // 2-core machine adds tens of ms of scheduling noise that is nobody's defect.
    assert.deepEqual(hostileSoakProblems(result, 100), [], JSON.stringify(result, null, 1));
    assert.ok(result.baseline.requests >= 100, `a baseline of ${result.baseline.requests} requests`);
  });
});
