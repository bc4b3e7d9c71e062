import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { bootstrapAdmin } from '../../server/bootstrap';
import type { IdentityService } from '../../server/identity/identity-service';
import { tempDirSync } from '../helpers/temp-dirs';

describe('first start', () => {
  it('writes the first admin key into a data dir that does not exist yet (the PostgreSQL case), mode 0600', async () => {
    const root = tempDirSync('aibridge-boot-');
    const dataDir = path.join(root, 'not', 'yet');
    const identity = {
      bootstrapAdmin: async () => ({ key: 'aib_first_admin_key' }),
    } as unknown as IdentityService;
    const created = await bootstrapAdmin(identity, dataDir, 'admin@example.com');
    assert.equal(created?.key, 'aib_first_admin_key');
    const file = path.join(dataDir, 'admin.key');
    assert.equal(fs.readFileSync(file, 'utf8'), 'aib_first_admin_key\n');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    fs.rmSync(root, { recursive: true, force: true });
  });
});
