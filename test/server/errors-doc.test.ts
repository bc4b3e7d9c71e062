import assert from 'node:assert/strict';
import fs from 'node:fs';
import { ERROR_CODES } from '../../shared/errors';

describe('docs/errors.md', () => {
  it('lists exactly the codes in the registry, with their statuses', () => {
    const doc = fs.readFileSync('docs/errors.md', 'utf8');
    const rows = [...doc.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    const registry = Object.entries(ERROR_CODES).map(([code, e]) => [code, e.status]);
    assert.deepEqual(
      rows.sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      registry.sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
  });
});
