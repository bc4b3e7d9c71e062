// Injected into the server's ES module chunks (scripts/server-bundle.mjs): the CommonJS packages
// bundled there read `__dirname` and `__filename`, which ES modules do not have. Injected, not a
// banner, so that esbuild renames around a package that declares its own.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const file = fileURLToPath(import.meta.url);

export { file as __filename };
export const __dirname = dirname(file);
