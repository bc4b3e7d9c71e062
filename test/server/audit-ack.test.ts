import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { EmbeddedStore } from '../../server/store/embedded/embedded-store';
import type { NewInterception } from '../../server/store/types';
import type { Interception } from '../../shared/interception';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';

/** An embedded store whose writes take `delayMs` longer, and which says what it holds. */
async function slowStore(delayMs: number): Promise<{ store: EmbeddedStore; ids: Set<string> }> {
  const store = new EmbeddedStore({ dataDir: await tempDir() });
  const ids = new Set<string>();
  const append = store.appendInterception.bind(store);
  store.appendInterception = async (rec: NewInterception): Promise<Interception> => {
    await new Promise((r) => setTimeout(r, delayMs));
    const stored = await append(rec);
    ids.add(rec.id);
    return stored;
  };
  return { store, ids };
}

describe('AIBRIDGE_AUDIT_ACK: when an answer ends', () => {
  let mock: AnthropicMock;
  before(async () => {
    mock = await new AnthropicMock().start();
  });
  after(() => mock.stop());

  for (const [ack, stored] of [
    ['stored', true],
    ['sent', false],
  ] as const) {
    it(`${ack}: the record is ${stored ? 'already' : 'not yet'} in the store when the client's stream and JSON answers end`, async () => {
      const { store, ids } = await slowStore(400);
      const tb: TestBridge = await startBridge(mock.url, { AIBRIDGE_AUDIT_ACK: ack }, undefined, { store });
      try {
        const { key } = await tb.addUser(`ack-${ack}@example.com`);
        const client = new Anthropic({ apiKey: key, baseURL: `${tb.url}/anthropic`, maxRetries: 0 });
        const body = {
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          messages: [{ role: 'user' as const, content: 'hi' }],
        };

        const json = await client.messages.create(body).withResponse();
        const jsonId = json.response.headers.get('x-aibridge-interception-id')!;
        assert.equal(ids.has(jsonId), stored, 'JSON answer');

        const stream = await client.messages.create({ ...body, stream: true }).withResponse();
        for await (const _ of stream.data) {
          // read to the end of the body, as a client that waits for it does
        }
        const streamId = stream.response.headers.get('x-aibridge-interception-id')!;
        assert.equal(ids.has(streamId), stored, 'streamed answer');
        await tb.interceptions(2);
      } finally {
        await tb.close();
      }
    });
  }

  it('defaults to stored with PostgreSQL and to sent with the embedded store', async () => {
    const { loadConfig } = await import('../../server/config');
    assert.equal(loadConfig({ port: '0' }, {}).auditAck, 'sent');
    assert.equal(
      loadConfig({ port: '0' }, { AIBRIDGE_DATABASE_URL: 'postgres://u@127.0.0.1/db' }).auditAck,
      'stored',
    );
    assert.throws(() => loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_ACK: 'later' }), /AIBRIDGE_AUDIT_ACK/);
  });

  it('AIBRIDGE_AUDIT_SYNC_MS: group commit by default only when nobody waits on the sync', async () => {
    const { loadConfig, DEFAULT_AUDIT_SYNC_MS } = await import('../../server/config');
    assert.ok(DEFAULT_AUDIT_SYNC_MS > 0);
    assert.equal(loadConfig({ port: '0' }, {}).auditSyncMs, DEFAULT_AUDIT_SYNC_MS);
    assert.equal(loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_ACK: 'stored' }).auditSyncMs, 0);
    assert.equal(
      loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_ACK: 'stored', AIBRIDGE_AUDIT_SYNC_MS: '5' }).auditSyncMs,
      5,
    );
    assert.equal(loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_SYNC_MS: '0' }).auditSyncMs, 0);
    assert.throws(
      () => loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_SYNC_MS: 'soon' }),
      /AIBRIDGE_AUDIT_SYNC_MS/,
    );
    assert.throws(
      () => loadConfig({ port: '0' }, { AIBRIDGE_AUDIT_SYNC_MS: '5000' }),
      /AIBRIDGE_AUDIT_SYNC_MS/,
    );
  });
});
