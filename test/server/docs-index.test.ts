import assert from 'node:assert/strict';
import fs from 'node:fs';

describe("README's documentation index", () => {
  it('links every page in docs/, and only pages that exist', () => {
    const readme = fs.readFileSync('README.md', 'utf8');
    const index = readme.slice(readme.indexOf('\n## Documentation\n'), readme.indexOf('\n## Layout\n'));
    const listed = [...index.matchAll(/^- \[docs\/([^\]]+)\]\(docs\/\1\)/gm)].map((m) => m[1]);
    const pages = fs.readdirSync('docs').filter((f) => f.endsWith('.md'));
    assert.deepEqual([...listed].sort(), pages.sort());
  });
});
