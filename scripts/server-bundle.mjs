// The server's esbuild options, shared by `npm run build` (dist/aibridge.cjs and its chunks in
// dist/server/) and `npm run build:binary` (one CommonJS file for the single executable).
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';

const pricesVersion = JSON.parse(
  readFileSync('node_modules/@pydantic/genai-prices/package.json', 'utf8'),
).version;

/** What every Node bundle of this repository shares: the server's and the extension's. */
export const nodeBundle = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
};

/**
 * The first line the server runs, in the launcher (dist/aibridge.cjs) and the single executable:
 * start-up does not grow V8's young generation; the server puts V8's default back once it is up
 * (server/start-up-heap.ts).
 */
export const startUpHeap = "require('node:v8').setFlagsFromString('--semi-space-growth-factor=1');";

export const serverOptions = {
  ...nodeBundle,
  entryPoints: { main: 'server/main.ts' },
  // A build constant, not an environment variable: nothing at run time can change it.
  define: { __AIBRIDGE_PRICES_VERSION__: JSON.stringify(pricesVersion) },
  // V8 keeps the whole source resident: without comments and blank space it is much smaller, and
  // the idle process with it. Names stay, so stacks and profiles still read without the source
  // map (docs/performance.md, idle RSS).
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
};

/**
 * ES modules split at every `await import(...)`: what a bridge loads on first use (the PostgreSQL
 * store, the MCP SDK, the clouds' credential chains, Bedrock's signer and event-stream codec) is
 * in its own chunk, never read or parsed by a bridge that does not use it (idle RSS −20 MB,
 * docs/performance.md).
 */
export const splitOptions = {
  ...serverOptions,
  format: 'esm',
  splitting: true,
  outExtension: { '.js': '.mjs' },
  // Bundled CommonJS packages call `require` (esbuild's shim looks for it by that name).
  banner: {
    js: "import { createRequire as __aibridgeRequire } from 'node:module'; const require = __aibridgeRequire(import.meta.url);",
  },
  inject: ['scripts/esm-paths.mjs'],
};

/**
 * esbuild escapes non-ASCII characters in code but keeps them in the comments it preserves; one
 * is enough for V8 to hold a whole source as a two-byte string (twice the resident memory).
 * A `\uXXXX` escape means the same in a string, template, regex or identifier and nothing in a
 * comment, so every one is escaped (docs/performance.md, idle RSS).
 */
export async function asciiOnly(file) {
  const text = await readFile(file, 'utf8');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range is the point
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (ascii !== text) await writeFile(file, ascii);
}
