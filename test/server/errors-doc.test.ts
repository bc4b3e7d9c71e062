import assert from 'node:assert/strict';
import fs from 'node:fs';
import { SERVER_ERROR_CODES } from '../../server/errors';
import { CLOSE_CODES, ERROR_CODES } from '../../shared/errors';

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

  const doc = () => fs.readFileSync('docs/errors.md', 'utf8');
  const byFirst = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));

  it('lists exactly the codes no client receives, with the answer a client gets instead', () => {
    const rows = [...doc().matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(?:`([a-z_]+)`|\(none\))\s*\|/gm)].map((m) => [
      m[1],
      m[2] ?? null,
    ]);
    const registry = Object.entries(SERVER_ERROR_CODES).map(([code, e]) => [code, e.answer]);
    assert.deepEqual(rows.sort(byFirst), registry.sort(byFirst));
  });

  it('lists exactly the WebSocket close codes, with their names and whether they are final', () => {
    const rows = [...doc().matchAll(/^\|\s*(\d{4})\s*\|\s*`(\w+)`\s*\|\s*(yes|no)\s*\|/gm)].map((m) => [
      Number(m[1]),
      m[2],
      m[3] === 'yes',
    ]);
    const registry = Object.entries(CLOSE_CODES).map(([name, c]) => [c.code, name, c.final]);
    assert.deepEqual(rows.sort(byFirst), registry.sort(byFirst));
  });
});
