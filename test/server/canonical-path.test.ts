import assert from 'node:assert/strict';
import { geminiFamily } from '../../server/providers/gemini/family';
import { canonicalPath, routeFor } from '../../server/proxy/provider-paths';

/** The canonical form by its definition: `;parameters` dropped per segment, empty segments removed. */
function byDefinition(path: string): string {
  const segments = path
    .split('/')
    .map((s) => (s.includes(';') ? s.slice(0, s.indexOf(';')) : s))
    .filter((s) => s !== '');
  return `/${segments.join('/')}`;
}

describe('canonical provider paths and the route memo', () => {
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

  it('a route worked out before is the same route, however many distinct paths came in between', () => {
    const adapter = geminiFamily.create({
      name: 'gemini',
      baseUrl: 'https://g.example',
      apiKey: 'k',
      options: {},
    });
    const paths = Array.from({ length: 1500 }, (_, i) =>
      i % 3 === 0
        ? `/v1beta/models/m${i}:generateContent`
        : i % 3 === 1
          ? `//V1BETA/models/m${i}:STREAMGENERATECONTENT;x=${i}`
          : `/v1beta/files/f${i}`,
    );
    const first = paths.map((p) => routeFor(adapter, 'POST', p));
    assert.equal(first[0]?.kind, 'metered');
    assert.equal(first[1]?.path, '/v1beta/models/m1:streamGenerateContent');
    // Well past the memo's bound, in the other order, and with another method.
    for (let i = paths.length - 1; i >= 0; i--)
      assert.deepEqual(routeFor(adapter, 'POST', paths[i]!), first[i]);
    assert.equal(routeFor(adapter, 'GET', paths[0]!).kind, 'refused');
    // A path longer than the memo keeps is still routed, the same each time.
    const long = `/v1beta/models/${'m'.repeat(400)}:generateContent`;
    for (let i = 0; i < 2; i++) assert.equal(routeFor(adapter, 'POST', long).path, long);
  });
});
