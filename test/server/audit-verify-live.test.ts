import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ChainReport } from '../../server/core/chain';
import { startMockedBridge, type TestBridge } from '../helpers/bridge';

/** Tampering with the embedded store's journal while the bridge that reads it runs. */
describe('audit verify against a journal edited under a running bridge', function () {
  this.timeout(60_000);
  let tb: TestBridge;
  let close: () => Promise<void>;

  before(async () => {
    ({ tb, close } = await startMockedBridge());
  });
  after(() => close());

  it('a record edited in place (its checksum left as it was) is a break at that record, not a failed verify', async () => {
    const dev = await tb.addUser('live-edit@example.com');
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${tb.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${dev.key}`,
          'content-type': 'application/json',
          'anthropic-version': '2023-06-01',
        },
        body: JSON.stringify({
          model: 'claude-sonnet-4-5',
          max_tokens: 64,
          messages: [{ role: 'user', content: `step ${i}` }],
        }),
      });
      await res.text();
    }
    await tb.interceptions(4);
    const segDir = path.join(tb.dataDir, 'interceptions');
    const file = path.join(segDir, (await fs.readdir(segDir)).filter((f) => f.endsWith('.jsonl')).sort()[0]!);
    const text = await fs.readFile(file, 'utf8');
    const lines = text.trimEnd().split('\n');
    // The same length, one digit of the second record's prompt changed: "step 1" becomes "step 7".
    lines[1] = lines[1]!.replace('step 1', 'step 7');
    await fs.writeFile(file, `${lines.join('\n')}\n`);
    const r = await tb.api<ChainReport>('GET', '/api/v1/audit/verify', tb.adminKey);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ok, false);
    assert.equal(r.body.firstBreak?.seq, 2);
    assert.match(r.body.firstBreak!.reason, /edited/);
  });
});
