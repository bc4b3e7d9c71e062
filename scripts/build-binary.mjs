// Builds dist/aibridge: one executable with Node's single executable application support (one
// CommonJS bundle of the server injected into a copy of this Node binary with postject). A single
// executable loads no files beside it, so this bundle is not split. Run after `npm run build`
// (the admin page it serves is dist/admin, beside it).
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { build } from 'esbuild';
import { asciiOnly, serverOptions, startUpHeap } from './server-bundle.mjs';

const require = createRequire(import.meta.url);
const out = 'dist/aibridge';
const main = 'dist/aibridge-sea.cjs';
const blob = 'dist/aibridge.blob';

await build({
  ...serverOptions,
  entryPoints: ['server/main.ts'],
  format: 'cjs',
  sourcemap: false,
  outfile: main,
  banner: { js: startUpHeap },
});
await asciiOnly(main);
await writeFile(
  'dist/sea-config.json',
  JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }),
);
execFileSync(process.execPath, ['--experimental-sea-config', 'dist/sea-config.json'], { stdio: 'inherit' });
await rm(out, { force: true });
await copyFile(process.execPath, out);
await chmod(out, 0o755);
const postject = path.join(path.dirname(require.resolve('postject/package.json')), 'dist', 'cli.js');
execFileSync(
  process.execPath,
  [postject, out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'],
  { stdio: 'inherit' },
);
await rm(blob);
await rm(main);
await rm('dist/sea-config.json');
process.stdout.write(`built ${out}\n`);
