import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { readSmall, SMALL_ANSWER_LIMIT } from '../../server/providers/upstream-answer';

describe('an upstream answer read whole to map it (an error, a token count)', () => {
  it('is read up to 1 MiB and no further: an endpoint that streams without end does not grow the bridge', async () => {
    let sent = 0;
    const endless = new Readable({
      read() {
        sent += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024, 0x61));
      },
    });
    const got = await readSmall(endless as unknown as Dispatcher.ResponseData['body']);
    assert.equal(got.length, SMALL_ANSWER_LIMIT);
    assert.ok(endless.destroyed, 'the rest is not read');
    assert.ok(sent < 4 * SMALL_ANSWER_LIMIT, `${sent} bytes pulled`);
  });

  it('is read whole when it is small', async () => {
    const body = Readable.from([Buffer.from('{"message":'), Buffer.from('"slow down"}')]);
    const got = await readSmall(body as unknown as Dispatcher.ResponseData['body']);
    assert.equal(got.toString(), '{"message":"slow down"}');
  });
});
