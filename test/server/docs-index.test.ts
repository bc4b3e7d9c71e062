import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

describe("README's documentation index", () => {
  it('links every page in docs/, and only pages that exist', () => {
    const readme = fs.readFileSync('README.md', 'utf8');
    const index = readme.slice(readme.indexOf('\n## Documentation\n'), readme.indexOf('\n## Layout\n'));
    const listed = [...index.matchAll(/^- \[docs\/([^\]]+)\]\(docs\/\1\)/gm)].map((m) => m[1]);
    const pages = fs.readdirSync('docs').filter((f) => f.endsWith('.md'));
    assert.deepEqual([...listed].sort(), pages.sort());
  });
});

describe('docs/architecture.md', () => {
  it('names every capability plugin under server/', () => {
    const doc = fs.readFileSync('docs/architecture.md', 'utf8');
    const plugins = fs
      .readdirSync('server', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('-plugin.ts'))
      .map((f) => f.split(path.sep).join('/'));
    assert.ok(plugins.length >= 10);
    assert.deepEqual(
      plugins.filter((p) => !doc.includes(`\`${p}\``)),
      [],
    );
  });
});

describe('docs/admin.md', () => {
  it("lists every page of the admin page's navigation, with who sees it", () => {
    const app = fs.readFileSync('admin/app.tsx', 'utf8');
    const who = { null: 'all', true: 'admins', false: 'members' } as Record<string, string>;
    const pages = [...app.matchAll(/\{ id: '[a-z-]+', title: '([^']+)', admin: (null|true|false) \}/g)].map(
      (m) => `${m[1]}: ${who[m[2]!]}`,
    );
    assert.ok(pages.length >= 5);
    const doc = fs.readFileSync('docs/admin.md', 'utf8');
    const rows = [...doc.matchAll(/^\| ([A-Z][^|]*?) +\| (all|admins|members) +\|/gm)].map(
      (m) => `${m[1]}: ${m[2]}`,
    );
    assert.deepEqual([...rows].sort(), [...pages].sort());
  });
});
