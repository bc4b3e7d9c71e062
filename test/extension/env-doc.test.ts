import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

describe("docs/extension.md's environment table", () => {
  it('lists every environment variable the extension reads (HOME aside)', () => {
    const read = new Set<string>();
    for (const f of sourceFiles('extension'))
      for (const m of fs.readFileSync(f, 'utf8').matchAll(/\benv\??\.([A-Z][A-Z0-9_]+)/g)) read.add(m[1]!);
    read.delete('HOME');
    const doc = fs.readFileSync('docs/extension.md', 'utf8');
    const table = doc.slice(doc.indexOf('| environment '));
    const listed = [...table.slice(0, table.indexOf('\n\n')).matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map(
      (m) => m[1],
    );
    assert.deepEqual([...listed].sort(), [...read].sort());
  });
});
