import assert from 'node:assert/strict';
import { canonicalPath } from '../../server/proxy/provider-paths';

/** The canonical form by its definition: `;parameters` dropped per segment, empty segments removed. */
function byDefinition(path: string): string {
  const segments = path
    .split('/')
    .map((s) => (s.includes(';') ? s.slice(0, s.indexOf(';')) : s))
    .filter((s) => s !== '');
  return `/${segments.join('/')}`;
}

describe('canonical provider paths', () => {
  it('a path already canonical is returned as it is, and every other spelling as the definition says', () => {
    const parts = ['', '/', '//', ';', ';x=1', 'v1', 'messages', 'V1', 'a;b', '.', '..', '%2F', ' '];
    const paths = new Set<string>(['', '/', '/v1/messages', 'v1/messages']);
    // Every sequence of up to four parts: slashes doubled, leading, trailing, parameters anywhere.
    const grow = (prefix: string, depth: number): void => {
      paths.add(prefix);
      if (depth === 0) return;
      for (const p of parts) grow(prefix + p, depth - 1);
    };
    grow('', 4);
    assert.ok(paths.size > 10_000);
    for (const p of paths) assert.equal(canonicalPath(p), byDefinition(p), JSON.stringify(p));
    assert.equal(canonicalPath('/v1//messages/'), '/v1/messages');
    assert.equal(canonicalPath('/v1/messages;x=1'), '/v1/messages');
  });
});
