import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ENV_VARS } from '../../server/config';

// The AIBRIDGE_/OTEL_/XDG_ families, and the conventional egress proxy variables in both spellings.
const NAME = /\b((?:AIBRIDGE|OTEL|XDG)_[A-Z0-9_]*[A-Z0-9]|(?:HTTPS?|NO)_PROXY|(?:https?|no)_proxy)\b/g;

function namesIn(text: string): Set<string> {
  return new Set([...text.matchAll(NAME)].map((m) => m[1] as string));
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

describe('environment variables: one registry, one reader, one doc', () => {
  const registry = new Set<string>(ENV_VARS);

  it('ENV_VARS names each variable config.ts reads, and only those', () => {
    const read = namesIn(fs.readFileSync('server/config.ts', 'utf8'));
    assert.deepEqual([...read].sort(), [...registry].sort());
  });

  it('docs/configuration.md documents every variable in ENV_VARS', () => {
    const doc = fs.readFileSync('docs/configuration.md', 'utf8');
    const missing = ENV_VARS.filter((v) => !doc.includes(`\`${v}\``));
    assert.deepEqual(missing, [], 'variables the bridge reads that docs/configuration.md does not list');
  });

  it('every variable docs/configuration.md names is one the bridge reads', () => {
    const doc = namesIn(fs.readFileSync('docs/configuration.md', 'utf8'));
    const unknown = [...doc].filter((v) => !registry.has(v));
    assert.deepEqual(unknown, [], 'variables docs/configuration.md names that nothing reads');
  });

  it('no file in server/ but config.ts reads the environment by name', () => {
    const readers = sourceFiles('server')
      .filter((f) => f !== path.join('server', 'config.ts'))
      .filter((f) => /\benv\s*(\.\s*|\[\s*['"`])(AIBRIDGE|OTEL|XDG)_/.test(fs.readFileSync(f, 'utf8')));
    assert.deepEqual(readers, []);
  });
});
