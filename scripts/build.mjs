// Bundles the server into one Node 20 CLI and the extension into one CommonJS file (vscode external).
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { buildAdmin } from './build-admin.mjs';

const pricesVersion = JSON.parse(
  readFileSync('node_modules/@pydantic/genai-prices/package.json', 'utf8'),
).version;

const common = { bundle: true, platform: 'node', target: 'node20', sourcemap: 'linked', logLevel: 'warning' };

await Promise.all([
  build({
    ...common,
    entryPoints: ['server/main.ts'],
    outfile: 'dist/aibridge.cjs',
    format: 'cjs',
    banner: { js: '#!/usr/bin/env node' },
    // A build constant, not an environment variable: nothing at run time can change it.
    define: { __AIBRIDGE_PRICES_VERSION__: JSON.stringify(pricesVersion) },
  }),
  build({
    ...common,
    entryPoints: ['extension/extension.ts'],
    outfile: 'dist/extension.cjs',
    format: 'cjs',
    external: ['vscode'],
  }),
  // The admin web page (admin/ → dist/admin), served by the bridge at /admin.
  buildAdmin(),
]);

import { chmod } from 'node:fs/promises';

await chmod('dist/aibridge.cjs', 0o755);
