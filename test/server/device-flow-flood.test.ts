import assert from 'node:assert/strict';
import { DeviceFlow } from '../../server/device/device-flow';
import { BridgeError } from '../../server/errors';
import type { IdentityService } from '../../server/identity/identity-service';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import { tempDir } from '../helpers/temp-dirs';

/**
 * The public start route of the device flow (`POST /api/v1/auth/device/code`) under a flood from
 * many addresses: the waiting grants are capped, but a full table makes room with the busiest
 * address's oldest grant instead of refusing every new sign-in, and one IPv6 /64 counts as one
 * address. DeviceFlow is driven directly with the addresses the route would pass it (`req.ip`).
 */
describe('device sign-in start under a flood from many addresses', function () {
  this.timeout(60_000);
  let store: EmbeddedStore;
  let flow: DeviceFlow;
  let now = Date.parse('2030-01-01T00:00:00Z');

  before(async () => {
    store = new EmbeddedStore({ dataDir: await tempDir() });
    await store.open();
    // start() mints no key: the identity service is not reached.
    flow = new DeviceFlow(store, {} as IdentityService, () => new Date(now), 7);
  });
  after(async () => {
    await store.close();
  });
  afterEach(async () => {
    for (const g of await store.listDocs<{ id: string }>('device_grant'))
      await store.deleteDoc('device_grant', g.id);
  });

  async function refused(p: Promise<unknown>): Promise<BridgeError> {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof BridgeError, String(err));
      return err;
    }
    assert.fail('expected a refusal');
  }

  it('caps one IPv6 /64 at 20 waiting sign-ins, whichever of its addresses asks; another /64 and IPv4 are served', async () => {
    for (let i = 0; i < 20; i++) await flow.start('flood', `2001:db8:7:7::${(i + 1).toString(16)}`);
    const e = await refused(flow.start('flood', '2001:db8:7:7:abcd:ef01:2345:6789'));
    assert.equal(e.code, 'rate_limited');
    assert.equal(e.headers['retry-after'], '60');
    // The same /64, written otherwise.
    assert.equal((await refused(flow.start('flood', '2001:0DB8:0007:0007::ffff'))).code, 'rate_limited');
    assert.ok(await flow.start('laptop', '2001:db8:7:8::1'), 'another /64 is another address');
    assert.ok(await flow.start('laptop', '192.0.2.10'));
    assert.equal((await store.listDocs('device_grant')).length, 22);
  });

  it('a table filled from many addresses still gives a new address a code; the flood replaces only its own', async () => {
    now += 1000;
    const lone = await flow.start('my laptop', '203.0.113.7');
    // 999 more from 50 IPv4 addresses (20 each, the per-address cap) and one IPv6 /64 (19).
    let n = 1;
    for (let a = 1; a <= 50 && n < 1000; a++)
      for (let i = 0; i < 20 && n < 1000; i++, n++) {
        now += 1;
        await flow.start('flood', `198.18.0.${a}`);
      }
    for (; n < 1000; n++) {
      now += 1;
      await flow.start('flood', `2001:db8:9:9::${n.toString(16)}`);
    }
    assert.equal((await store.listDocs('device_grant')).length, 1000, 'the table is full');

    now += 1;
    const fresh = await flow.start('aibridge login', '198.51.100.9');
    assert.match(fresh.userCode, /^[A-Z]{8}$/);
    assert.match(fresh.deviceCode, /^aibd_/);
    const grants = await store.listDocs<{ deviceName: string; clientAddress: string | null }>('device_grant');
    assert.equal(grants.length, 1000, 'still capped: one grant made room');
    assert.ok(
      grants.some((g) => g.clientAddress === '198.51.100.9'),
      'the new sign-in waits',
    );
    assert.ok(
      grants.some((g) => g.clientAddress === '203.0.113.7' && g.deviceName === 'my laptop'),
      "the lone earlier sign-in of another address is kept: the flood's own made room",
    );
    assert.equal(
      grants.filter((g) => g.clientAddress === '198.18.0.1').length,
      19,
      "the busiest's oldest went",
    );
    // The first sign-in's device still polls as waiting.
    await assert.rejects(flow.poll(lone.deviceCode), { code: 'authorization_pending' });

    // And again: each new start is served, never a 429 for everyone.
    for (let i = 0; i < 30; i++) {
      now += 1;
      await flow.start('editor', `100.64.${i}.1`);
    }
    assert.equal((await store.listDocs('device_grant')).length, 1000);
  });
});
