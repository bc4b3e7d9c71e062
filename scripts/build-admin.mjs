// Bundles the admin web page (admin/) into dist/admin: index.html plus content-hashed scripts and
// styles under dist/admin/assets/, served by the bridge at /admin (server/admin/assets.ts).
// Everything is bundled: the page needs no CDN and works offline. Run by scripts/build.mjs, or alone.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function buildAdmin() {
  const out = path.join(root, 'dist', 'admin');
  await rm(out, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['admin/main.tsx'],
    outdir: path.join(out, 'assets'),
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: true,
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
  const js = outputs.find((f) => f.endsWith('.js'));
  const css = outputs.find((f) => f.endsWith('.css'));
  if (!js || !css)
    throw new Error(`admin build: expected a .js and a .css output, got ${outputs.join(', ')}`);
  const template = await readFile(path.join(root, 'admin', 'index.html'), 'utf8');
  await writeFile(
    path.join(out, 'index.html'),
    template.replace('{{css}}', `/admin/assets/${css}`).replace('{{js}}', `/admin/assets/${js}`),
  );
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await buildAdmin();
