// Builds dist/aibridge: one executable with Node's single executable application support (one
// CommonJS bundle of the server injected into a copy of this Node binary with postject). A single
// executable loads no files beside it, so this bundle is not split, and the admin page (dist/admin)
// is carried inside it as assets. Run after `npm run build`.
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, readdir, rm, writeFile } from 'node:fs/promises';
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
// The admin page goes inside the binary (server/admin/assets.ts reads it back), so a binary
// installed alone serves /admin too; the list of its files is an asset of its own.
const adminDir = 'dist/admin';
const adminFiles = (await readdir(adminDir, { recursive: true, withFileTypes: true }))
  .filter((e) => e.isFile())
  .map((e) =>
    path
      .relative(adminDir, path.join(e.parentPath ?? e.path, e.name))
      .split(path.sep)
      .join('/'),
  );
const adminList = 'dist/admin-files.json';
await writeFile(adminList, JSON.stringify(adminFiles));
const assets = Object.fromEntries([
  ['admin/files.json', adminList],
  ...adminFiles.map((f) => [`admin/${f}`, path.join(adminDir, f)]),
]);
await writeFile(
  'dist/sea-config.json',
  JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, assets }),
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
await rm(adminList);
process.stdout.write(`built ${out}\n`);
