// Bundles the server into one Node 20 CLI (dist/aibridge.cjs, which loads its ES module chunks
// from dist/server/) and the extension into one CommonJS file (vscode external).
import { chmod, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { buildAdmin } from './build-admin.mjs';
import { asciiOnly, nodeBundle, splitOptions, startUpHeap } from './server-bundle.mjs';

// Chunk names carry a content hash: stale ones from an earlier build must not pile up.
await rm('dist/server', { recursive: true, force: true });

await Promise.all([
  build({ ...splitOptions, outdir: 'dist/server' }),
  build({
    ...nodeBundle,
    entryPoints: ['extension/extension.ts'],
    outfile: 'dist/extension.cjs',
    format: 'cjs',
    external: ['vscode'],
  }),
  // The admin web page (admin/ → dist/admin), served by the bridge at /admin.
  buildAdmin(),
]);

for (const f of await readdir('dist/server'))
  if (f.endsWith('.mjs')) await asciiOnly(path.join('dist/server', f));

// The npm bin and the name every script, test and image runs. CommonJS, so that `node
// dist/aibridge.cjs` works whatever package.json is beside it.
await writeFile(
  'dist/aibridge.cjs',
  [
    '#!/usr/bin/env node',
    "'use strict';",
    startUpHeap,
    "import('./server/main.mjs').catch((err) => {",
    // An install or image that copied this file alone (as the single bundle once was) gets told
    // what is missing rather than a module-resolution stack.
    "  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {",
    '    process.stderr.write(`aibridge: ${err.message}\\naibridge: the server is dist/aibridge.cjs and the chunks in dist/server/ beside it; copy both\\n`);',
    '    process.exit(1);',
    '  }',
    '  throw err;',
    '});',
    '',
  ].join('\n'),
);
await chmod('dist/aibridge.cjs', 0o755);
