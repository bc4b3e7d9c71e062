import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import OpenAI from 'openai';
import type { Interception } from '../../shared/interception';
import { startBridge, type TestBridge, tempDir } from '../helpers/bridge';
import { type Listening, listenOnLoopback } from '../helpers/loopback';

/**
 * OpenAI-compatible servers that report usage in their own way, as their APIs send it. xAI's
 * Chat Completions counts reasoning apart from `completion_tokens` (its `total_tokens` is prompt,
 * completion and reasoning), though it is billed as output.
 */
const XAI_USAGE = {
  prompt_tokens: 14,
  completion_tokens: 1,
  total_tokens: 327,
  prompt_tokens_details: { text_tokens: 14, audio_tokens: 0, image_tokens: 0, cached_tokens: 6 },
  completion_tokens_details: {
    reasoning_tokens: 312,
    audio_tokens: 0,
    accepted_prediction_tokens: 0,
    rejected_prediction_tokens: 0,
  },
  num_sources_used: 0,
};

/** Answers Chat Completions with `usage`, whole or streamed (usage last, `choices: []`). */
function compatServer(usage: Record<string, unknown>): http.Server {
  return http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { model: string; stream?: boolean };
      if (body.model.endsWith(':failing')) {
        // OpenRouter: an error after the model began answers 200, the error in the body.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: {
              message: 'Provider returned error',
              code: 502,
              metadata: { raw: 'upstream connect error', provider_name: 'Example' },
            },
            user_id: 'user_2abc',
          }),
        );
        return;
      }
      const base = { id: 'chatcmpl-1', created: 1733300000, model: body.model, system_fingerprint: 'fp_1' };
      if (body.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            ...base,
            object: 'chat.completion',
            choices: [
              {
                index: 0,
                message: {
                  role: 'assistant',
                  content: '4',
                  reasoning_content: 'Two and two.',
                  refusal: null,
                },
                finish_reason: 'stop',
              },
            ],
            usage,
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (choices: unknown[], extra = {}) =>
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices, ...extra })}\n\n`;
      res.write(chunk([{ index: 0, delta: { role: 'assistant', content: '4' }, finish_reason: null }]));
      res.write(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
      res.write(chunk([], { usage }));
      res.end('data: [DONE]\n\n');
    });
  });
}

describe('usage from OpenAI-compatible servers', () => {
  let xai: Listening;
  let tb: TestBridge;
  let dev: { key: string };

  before(async () => {
    xai = await listenOnLoopback(compatServer(XAI_USAGE));
    const dir = await tempDir();
    const file = path.join(dir, 'providers.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        providers: {
          xai: {
            type: 'openai-compatible',
            baseUrl: `${xai.origin}/v1`,
            prices: { 'grok-3-mini': { inputPerMTok: 1, outputPerMTok: 10, cacheReadPerMTok: 0.5 } },
          },
        },
      }),
    );
    tb = await startBridge('http://127.0.0.1:9', { AIBRIDGE_PROVIDERS_FILE: file });
    dev = await tb.addUser('compat-usage@example.com');
  });

  after(async () => {
    await tb?.close();
    await xai?.stop();
  });

  const client = (): OpenAI => new OpenAI({ apiKey: dev.key, baseURL: `${tb.url}/xai/v1`, maxRetries: 0 });

  /** 8 uncached and 6 cached input; 1 completion and 312 reasoning tokens, all billed as output. */
  function assertXaiRecord(rec: Interception): void {
    assert.deepEqual(
      { ...rec.usage },
      { input: 8, cacheRead: 6, cacheWrite: 0, output: 313, reasoning: 312 },
      'reasoning counted as output, as billed',
    );
    assert.equal(rec.costUsd, (8 * 1 + 6 * 0.5 + 313 * 10) / 1e6);
  }

  it('counts the reasoning xAI reports outside completion_tokens as output (whole answer)', async () => {
    const r = await client().chat.completions.create({
      model: 'grok-3-mini',
      messages: [{ role: 'user', content: '2+2?' }],
    });
    assert.equal(r.choices[0]!.message.content, '4');
    const [rec] = await tb.interceptions(1, dev.key);
    assertXaiRecord(rec!);
  });

  it('records an error a server answers with status 200 (OpenRouter) as an error, not a floored answer', async () => {
    const n = (await tb.interceptions(0, dev.key)).length;
    const r = await fetch(`${tb.url}/xai/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${dev.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'grok-3-mini:failing', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { error: { code: number } }).error.code, 502, 'relayed as sent');
    const [rec] = await tb.interceptions(n + 1, dev.key);
    assert.equal(rec!.status, 'error');
    assert.deepEqual(rec!.error, { type: 'http_502', message: 'Provider returned error' });
    assert.equal(rec!.usageEstimated, undefined, 'no usage made up for it');
    assert.equal(rec!.costUsd, 0);
  });

  it('counts it from the usage chunk of a stream', async () => {
    const stream = await client().chat.completions.create({
      model: 'grok-3-mini',
      stream: true,
      messages: [{ role: 'user', content: '2+2?' }],
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, '4');
    const [rec] = await tb.interceptions(2, dev.key);
    assertXaiRecord(rec!);
  });
});
