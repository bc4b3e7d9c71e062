import fs from 'node:fs/promises';
import path from 'node:path';
import type { CreatedKey } from '../shared/identity';
import type { IdentityService } from './identity/identity-service';

export const ADMIN_KEY_FILE = 'admin.key';

/**
 * First start on an empty store: create the admin user and a key, and keep the key in
 * `<data-dir>/admin.key` (mode 0600) so the CLI on this machine can use it. Returns the key the one
 * time it is created.
 */
export async function bootstrapAdmin(
  identity: IdentityService,
  dataDir: string,
  email: string,
): Promise<CreatedKey | undefined> {
  // Made before the admin is: with PostgreSQL nothing else creates the data dir, and a key created
  // but never written down would be lost for good (the store is no longer empty at the next start).
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const created = await identity.bootstrapAdmin(email);
  if (!created) return undefined;
  const file = path.join(dataDir, ADMIN_KEY_FILE);
  await fs.writeFile(file, `${created.key}\n`, { mode: 0o600 });
  await fs.chmod(file, 0o600);
  return created;
}
