import assert from 'node:assert/strict';
import type { FastifyRequest } from 'fastify';
import { geminiFamily, modelOfPath } from '../../server/providers/gemini/family';
import { routeFor } from '../../server/proxy/provider-paths';
import { queryCredential } from '../../server/proxy/query-credential';

const adapter = geminiFamily.create({
  name: 'gemini',
  baseUrl: 'https://g.example',
  apiKey: 'k',
  options: {},
});

function route(method: string, path: string): string {
  const r = routeFor(adapter, method, path);
  return `${r.kind} ${r.path}`;
}

/** What the hook leaves of a request: its URL and the key header it set. */
async function afterHook(url: string, headers: Record<string, string> = {}) {
  const req = { raw: { url }, headers: { ...headers } };
  await queryCredential('key', 'x-goog-api-key')(req as unknown as FastifyRequest);
  return { url: req.raw.url, key: (req.headers as Record<string, string>)['x-goog-api-key'] };
}

describe('Gemini paths and the ?key= credential', () => {
  it('meters generateContent and streamGenerateContent, whatever the case, spelled canonically upstream', () => {
    assert.equal(
      route('POST', '/v1beta/models/gemini-2.5-pro:generateContent'),
      'metered /v1beta/models/gemini-2.5-pro:generateContent',
    );
    assert.equal(
      route('POST', '/V1BETA/models/Gemini-X:STREAMGENERATECONTENT'),
      'metered /v1beta/models/Gemini-X:streamGenerateContent',
    );
    assert.equal(route('POST', '//v1/models/m:generateContent;x=1'), 'metered /v1/models/m:generateContent');
    // A metered path with another method is refused, never passed through as "one model".
    assert.equal(
      route('GET', '/v1beta/models/m:generateContent'),
      'refused /v1beta/models/m:generateContent',
    );
  });

  it('passes countTokens and the model list, refuses everything else', () => {
    assert.equal(route('POST', '/v1beta/models/m:countTokens'), 'passthrough /v1beta/models/m:countTokens');
    assert.equal(route('GET', '/v1beta/models'), 'passthrough /v1beta/models');
    assert.equal(route('GET', '/v1beta/models/gemini-2.5-pro'), 'passthrough /v1beta/models/gemini-2.5-pro');
    assert.equal(route('POST', '/v1beta/models/:generateContent'), 'refused /v1beta/models/:generateContent');
    assert.equal(route('POST', '/v1beta/models/m:batchGenerateContent').split(' ')[0], 'refused');
    assert.equal(route('POST', '/v1beta/models/m:generateContentX').split(' ')[0], 'refused');
    assert.equal(route('POST', '/v1beta/cachedContents').split(' ')[0], 'refused');
    assert.equal(route('POST', '/v1beta/tunedModels/t:generateContent').split(' ')[0], 'refused');
  });

  it('reads the model from the path', () => {
    assert.equal(modelOfPath('/v1beta/models/gemini-2.5-pro:generateContent'), 'gemini-2.5-pro');
    assert.equal(
      modelOfPath('/v1/models/gemini-2.0-flash-001:streamGenerateContent'),
      'gemini-2.0-flash-001',
    );
    assert.equal(modelOfPath('/v1beta/models'), null);
    // As Google reads it: the method after the last colon. Cut at the first, a call to
    // `a:gemini-2.5-pro` was priced and judged as the cheaper `a`.
    assert.equal(
      modelOfPath('/v1beta/models/gemini-2.5-flash-lite:gemini-2.5-pro:generateContent'),
      'gemini-2.5-flash-lite:gemini-2.5-pro',
    );
  });

  it('cuts ?key= from the URL, every copy and spelling, and uses it as the key', async () => {
    assert.deepEqual(await afterHook('/gemini/v1beta/models/m:streamGenerateContent?alt=sse&key=abc'), {
      url: '/gemini/v1beta/models/m:streamGenerateContent?alt=sse',
      key: 'abc',
    });
    assert.deepEqual(await afterHook('/g/x?key=a%2Bb&k%65y=c&alt=sse'), { url: '/g/x?alt=sse', key: 'a+b' });
    assert.deepEqual(await afterHook('/g/x?keys=1'), { url: '/g/x?keys=1', key: undefined });
    // Google's system parameters also go by a `$` name: a key sent as `$key` went upstream.
    assert.deepEqual(await afterHook('/g/x?%24key=d&alt=sse'), { url: '/g/x?alt=sse', key: 'd' });
    assert.deepEqual(await afterHook('/g/x?$key=e&key=f'), { url: '/g/x', key: 'e' });
  });

  it('keeps a header key over the query one, still cutting the query', async () => {
    assert.deepEqual(await afterHook('/g/x?key=q', { 'x-goog-api-key': 'h' }), { url: '/g/x', key: 'h' });
    assert.deepEqual(await afterHook('/g/x?key=q', { authorization: 'Bearer b' }), {
      url: '/g/x',
      key: undefined,
    });
  });
});
