import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { SignatureV4 } from '@smithy/signature-v4';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';

/** Static test credentials, temporary ones (with a session token), as STS would hand out. */
export const AWS_TEST_CREDENTIALS = {
  accessKeyId: 'ASIATESTBEDROCK00001',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYBEDROCKKEY',
  sessionToken: 'IQoJb3JpZ2luX2VjEBedrockTestSessionToken//////////wEaCXVzLWVhc3QtMSJHMEUCIQ',
};
export interface AwsTestCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export const BEDROCK_REGION = 'us-east-1';
export const BEDROCK_TEXT = 'Hello from the Bedrock mock.';
/** What CountTokens answers. */
export const BEDROCK_COUNT = 23;
export const BEDROCK_USAGE = { input_tokens: 31, output_tokens: 17, cache_read_input_tokens: 5 };

/** `long-stream-exception`: forty text deltas, then an exception frame (no message_delta, no usage). */
export type BedrockScenario = 'text' | 'tool' | 'throttle' | 'stream-exception' | 'long-stream-exception';

export interface SeenBedrockRequest {
  path: string;
  /** The access key id the request was signed with. */
  accessKeyId: string;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
  /** Whether the SigV4 signature, recomputed here, matched the request's. */
  signatureValid: boolean;
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** One event-stream `chunk` message carrying an Anthropic stream event, as Bedrock frames it. */
function chunkFrame(event: Record<string, unknown>): Uint8Array {
  const bytes = Buffer.from(JSON.stringify(event)).toString('base64');
  return codec.encode({
    headers: {
      ':event-type': { type: 'string', value: 'chunk' },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: fromUtf8(JSON.stringify({ bytes, p: 'abcdefgh' })),
  });
}

function exceptionFrame(type: string, message: string): Uint8Array {
  return codec.encode({
    headers: {
      ':exception-type': { type: 'string', value: type },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'exception' },
    },
    body: fromUtf8(JSON.stringify({ message })),
  });
}

function events(model: string, scenario: BedrockScenario): Record<string, unknown>[] {
  const start = {
    type: 'message_start',
    message: {
      id: 'msg_bdrk_01',
      type: 'message',
      role: 'assistant',
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: BEDROCK_USAGE.input_tokens, cache_read_input_tokens: 5, output_tokens: 1 },
    },
  };
  const block =
    scenario === 'tool'
      ? [
          {
            type: 'content_block_start',
            index: 0,
            content_block: { type: 'tool_use', id: 'toolu_bdrk_1', name: 'get_weather', input: {} },
          },
          {
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'input_json_delta', partial_json: '{"city":' },
          },
          {
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'input_json_delta', partial_json: '"Paris"}' },
          },
        ]
      : [
          { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
          { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello from ' } },
          { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'the Bedrock mock.' } },
        ];
  return [
    start,
    ...block,
    { type: 'content_block_stop', index: 0 },
    {
      type: 'message_delta',
      delta: { stop_reason: scenario === 'tool' ? 'tool_use' : 'end_turn', stop_sequence: null },
      usage: { output_tokens: BEDROCK_USAGE.output_tokens },
    },
    {
      type: 'message_stop',
      'amazon-bedrock-invocationMetrics': {
        inputTokenCount: BEDROCK_USAGE.input_tokens,
        outputTokenCount: BEDROCK_USAGE.output_tokens,
        invocationLatency: 420,
        firstByteLatency: 100,
      },
    },
  ];
}

/**
 * AWS Bedrock Runtime's InvokeModel and InvokeModelWithResponseStream for Claude, protocol-exact:
 * every request's SigV4 signature is recomputed with the SDK's signer from the same credentials,
 * and streams are real event-stream frames, cut into chunks that split frames.
 */
export class BedrockMock {
  readonly seen: SeenBedrockRequest[] = [];
  scenario: BedrockScenario = 'text';
  private server = http.createServer((req, res) => void this.handle(req, res));
  /** The credentials the mock's IAM knows, by access key id: what signatures are recomputed with. */
  private readonly known = new Map<string, AwsTestCredentials>([
    [AWS_TEST_CREDENTIALS.accessKeyId, AWS_TEST_CREDENTIALS],
  ]);
  url = '';

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Makes another set of temporary credentials valid (as STS would after a refresh). */
  trust(c: AwsTestCredentials): void {
    this.known.set(c.accessKeyId, c);
  }

  /** Signs the request again from its signed headers and compares the Authorization headers. */
  private async verify(req: http.IncomingMessage, body: Buffer): Promise<boolean> {
    const auth = req.headers.authorization ?? '';
    const signedNames = /SignedHeaders=([^,]+)/.exec(auth)?.[1]?.split(';') ?? [];
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    const creds = this.known.get(/Credential=([^/]+)\//.exec(auth)?.[1] ?? '');
    if (!m || !creds || !signedNames.includes('host')) return false;
    if (req.headers['x-amz-security-token'] !== creds.sessionToken) return false;
    const signer = new SignatureV4({
      service: 'bedrock',
      region: BEDROCK_REGION,
      credentials: creds,
      sha256: Sha256,
    });
    const headers: Record<string, string> = {};
    for (const name of signedNames) headers[name] = String(req.headers[name] ?? '');
    const [path, query = ''] = (req.url ?? '/').split('?');
    const resigned = await signer.sign(
      {
        method: req.method ?? 'POST',
        protocol: 'http:',
        hostname: '127.0.0.1',
        path: path ?? '/',
        query: Object.fromEntries(new URLSearchParams(query)),
        headers,
        body,
      },
      { signingDate: new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) },
    );
    return resigned.headers.authorization === auth;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const signatureValid = await this.verify(req, raw);
    const body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    this.seen.push({
      path: req.url ?? '',
      accessKeyId: /Credential=([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? '',
      body,
      headers: req.headers,
      signatureValid,
    });
    const amzn = { 'x-amzn-requestid': `req-bdrk-${this.seen.length}` };
    if (!signatureValid) {
      res.writeHead(403, {
        ...amzn,
        'content-type': 'application/json',
        'x-amzn-errortype':
          'InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/',
      });
      res.end(
        JSON.stringify({
          message: 'The request signature we calculated does not match the signature you provided.',
        }),
      );
      return;
    }
    if (this.scenario === 'throttle') {
      res.writeHead(429, {
        ...amzn,
        'content-type': 'application/json',
        'x-amzn-errortype': 'ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/',
      });
      res.end(JSON.stringify({ message: 'Too many requests, please wait before trying again.' }));
      return;
    }
    if (/^\/model\/[^/]+\/count-tokens$/.test(req.url ?? '')) {
      res.writeHead(200, { ...amzn, 'content-type': 'application/json' });
      res.end(JSON.stringify({ inputTokens: BEDROCK_COUNT }));
      return;
    }
    const match = /^\/model\/([^/]+)\/(invoke|invoke-with-response-stream)$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404, { ...amzn, 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'not found' }));
      return;
    }
    const model = 'claude-haiku-4-5-20251001';
    if (match[2] === 'invoke') {
      const content =
        this.scenario === 'tool'
          ? [{ type: 'tool_use', id: 'toolu_bdrk_1', name: 'get_weather', input: { city: 'Paris' } }]
          : [{ type: 'text', text: BEDROCK_TEXT }];
      res.writeHead(200, {
        ...amzn,
        'content-type': 'application/json',
        'x-amzn-bedrock-input-token-count': String(BEDROCK_USAGE.input_tokens),
        'x-amzn-bedrock-output-token-count': String(BEDROCK_USAGE.output_tokens),
      });
      res.end(
        JSON.stringify({
          id: 'msg_bdrk_01',
          type: 'message',
          role: 'assistant',
          model,
          content,
          stop_reason: this.scenario === 'tool' ? 'tool_use' : 'end_turn',
          stop_sequence: null,
          usage: BEDROCK_USAGE,
        }),
      );
      return;
    }
    res.writeHead(200, {
      ...amzn,
      'content-type': 'application/vnd.amazon.eventstream',
      'x-amzn-bedrock-content-type': 'application/json',
    });
    const list = events(model, this.scenario);
    const frames =
      this.scenario === 'long-stream-exception'
        ? [
            ...list.slice(0, 2).map(chunkFrame),
            ...Array.from({ length: 40 }, (_, i) =>
              chunkFrame({
                type: 'content_block_delta',
                index: 0,
                delta: { type: 'text_delta', text: `w${i} ` },
              }),
            ),
            exceptionFrame('modelStreamErrorException', 'The model stream failed.'),
          ]
        : this.scenario === 'stream-exception'
          ? [
              ...list.slice(0, 3).map(chunkFrame),
              exceptionFrame('throttlingException', 'Too many tokens, please wait before trying again.'),
            ]
          : list.map(chunkFrame);
    const all = Buffer.concat(frames);
    // Odd-sized writes, so frames arrive split across chunks as they do over TCP.
    for (let i = 0; i < all.length; i += 97) {
      res.write(all.subarray(i, i + 97));
      await new Promise((r) => setImmediate(r));
    }
    res.end();
  }
}
