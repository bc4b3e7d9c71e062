import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from './bridge';

/** A providers file (AIBRIDGE_PROVIDERS_FILE) in a fresh directory, holding `providers`; its path. */
export async function writeProvidersFile(providers: Record<string, unknown>): Promise<string> {
  const file = path.join(await tempDir(), 'providers.json');
  await fs.writeFile(file, JSON.stringify({ providers }));
  return file;
}
