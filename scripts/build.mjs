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
    // V8 keeps the whole source resident: without comments and blank space it is 5.8 MB, not
    // 8.8, and the idle process about 15 MB smaller. Names stay, so stacks and profiles still
    // read without the source map (docs/performance.md, idle RSS).
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
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

import { chmod, readFile, writeFile } from 'node:fs/promises';

/**
 * esbuild escapes non-ASCII characters in code but keeps them in the comments it preserves; one
 * is enough for V8 to hold the whole 8 MB source as a two-byte string (16 MB of resident memory).
 * A `\uXXXX` escape means the same in a string, template, regex or identifier and nothing in a
 * comment, so every one is escaped (docs/performance.md, idle RSS).
 */
async function asciiOnly(file) {
  const text = await readFile(file, 'utf8');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range is the point
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) await writeFile(file, ascii);
}

await asciiOnly('dist/aibridge.cjs');
await chmod('dist/aibridge.cjs', 0o755);
