import assert from 'node:assert/strict';
import { ESTIMATE_BYTES_PER_TOKEN, estimatedBodyBytes, IMAGE_TOKENS } from '../../server/core/inline-media';

const png = 'iVBORw0KGgo'.padEnd(600_000, 'A');
const image = IMAGE_TOKENS * ESTIMATE_BYTES_PER_TOKEN;

/** What an estimate (budget reservation, tpm hold) takes a body's size to be (docs/spend.md). */
describe('a request body as the estimates count it (estimatedBodyBytes)', () => {
  it('counts an inline image as the tokens a provider counts for one, in each API’s form', () => {
    const forms = [
      // Anthropic
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } },
      // OpenAI Chat / Responses
      { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
      // Gemini
      { inlineData: { mimeType: 'image/png', data: png } },
    ];
    for (const part of forms) {
      const body = Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: [part] }] }));
      const counted = estimatedBodyBytes(body);
      assert.ok(
        counted < body.length - png.length + image + 200,
        `${JSON.stringify(part).slice(0, 40)}: ${counted}`,
      );
      assert.ok(counted >= image, 'the image still counts');
    }
  });

  it('counts a document, text and small bodies by their size', () => {
    const pdf = Buffer.from(
      JSON.stringify({
        content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: png } }],
      }),
    );
    assert.equal(estimatedBodyBytes(pdf), pdf.length);
    const text = Buffer.from(JSON.stringify({ content: 'x'.repeat(600_000) }));
    assert.equal(estimatedBodyBytes(text), text.length);
    const small = Buffer.from(
      JSON.stringify({ content: [{ inlineData: { mimeType: 'image/png', data: 'A'.repeat(50_000) } }] }),
    );
    assert.equal(estimatedBodyBytes(small), small.length, 'under 256 KiB a body is not scanned');
  });
});
