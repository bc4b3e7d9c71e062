import type { SignatureV4 } from '@smithy/signature-v4';
import type { Dispatcher } from 'undici';
import { commonJs } from '../../core/commonjs';
import { anthropicErrorBody } from '../anthropic/errors';
import { messagesApi } from '../anthropic/messages';
import { anthropicModelListing } from '../anthropic/model-listing';
import { isObject } from '../common';
import type { FieldProblem, InstanceSettings, ProviderFamily } from '../family';
import { mappedNames } from '../model-listing';
import type { JsonObject, ProviderAdapter, UpstreamCall } from '../types';
import { jsonAnswer, localAnswer, readSmall, withBody } from '../upstream-answer';
import { requestUrl } from '../upstream-request';
import { awsCredentials } from './credentials';
import { awsErrorOf, mapAwsError } from './errors';
import { bedrockIdOf, priceModelOf } from './models';
import { bedrockRequest, countTokensRequest, mappedModel, modelsOf } from './request';

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;
/** The runtime endpoint of the instance's region; `{region}` is filled in by `create`. */
const DEFAULT_ENDPOINT = 'https://bedrock-runtime.{region}.amazonaws.com';
const COUNT_TOKENS = '/v1/messages/count_tokens';

function validate(entry: JsonObject): FieldProblem | undefined {
  if (typeof entry.region !== 'string' || !REGION.test(entry.region))
    return { field: 'region', message: 'expected an AWS region such as "us-east-1"' };
  if (entry.apiKey !== undefined)
    return {
      field: 'apiKey',
      message: 'a bedrock instance signs with AWS credentials from the default chain',
    };
  const m = entry.models;
  if (m !== undefined) {
    if (!isObject(m))
      return { field: 'models', message: 'expected an object of model name to Bedrock model id' };
    for (const [name, id] of Object.entries(m))
      if (typeof id !== 'string' || id === '')
        return { field: `models.${name}`, message: 'expected a Bedrock model id or inference-profile ARN' };
  }
  return undefined;
}

function headerOf(h: Readonly<Record<string, string | string[]>>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function create(s: InstanceSettings): ProviderAdapter {
  const region = String(s.options.region);
  const endpoint = new URL(s.baseUrl.replace('{region}', region));
  const basePath = endpoint.pathname.replace(/\/+$/, '');
  const models = modelsOf(s.options);
  const credentials = awsCredentials();
  // The signer and the event-stream codec load with the first call: a bridge without Bedrock
  // never parses them (docs/performance.md, idle RSS).
  let signer: Promise<SignatureV4> | undefined;
  const signerOf = (): Promise<SignatureV4> =>
    (signer ??= Promise.all([
      commonJs(import('@smithy/signature-v4')),
      commonJs(import('@aws-crypto/sha256-js')),
    ]).then(
      ([{ SignatureV4 }, { Sha256 }]) =>
        new SignatureV4({ service: 'bedrock', region, credentials, sha256: Sha256 }),
    ));

  async function send(call: UpstreamCall): Promise<Dispatcher.ResponseData> {
    let body: unknown;
    try {
      body = JSON.parse(call.bytes.toString('utf8'));
    } catch {
      body = undefined;
    }
    const counting = call.target.split('?')[0] === COUNT_TOKENS;
    const rewrite = counting ? countTokensRequest : bedrockRequest;
    const req = isObject(body) ? rewrite(body, headerOf(call.headers, 'anthropic-beta'), models) : undefined;
    if (!req) return localAnswer(400, anthropicErrorBody(400, 'model: a Bedrock model id is required'));
    const signed = await (await signerOf()).sign({
      method: 'POST',
      protocol: endpoint.protocol,
      hostname: endpoint.hostname,
      ...(endpoint.port ? { port: Number(endpoint.port) } : {}),
      path: basePath + req.path,
      query: {},
      headers: {
        host: endpoint.host,
        'content-type': 'application/json',
        accept: req.stream ? 'application/vnd.amazon.eventstream' : 'application/json',
      },
      body: req.body,
    });
    const res = await requestUrl(`${endpoint.origin}${basePath}${req.path}`, {
      method: 'POST',
      headers: signed.headers,
      body: req.body,
      dispatcher: call.dispatcher,
      signal: call.signal,
    });
    const type = String(res.headers['content-type'] ?? '');
    if (res.statusCode >= 400) {
      const raw = await readSmall(res.body);
      const errorType = res.headers['x-amzn-errortype'];
      const aws = awsErrorOf(typeof errorType === 'string' ? errorType : undefined, raw);
      const retry = res.headers['retry-after'];
      const mapped = mapAwsError(
        aws.name,
        res.statusCode,
        aws.message,
        typeof retry === 'string' ? retry : undefined,
      );
      return jsonAnswer(
        res,
        mapped.status,
        mapped.body,
        mapped.retryAfter ? { 'retry-after': mapped.retryAfter } : {},
      );
    }
    if (counting) {
      // `{"inputTokens": n}` → Anthropic's `{"input_tokens": n}`.
      let answer: unknown;
      try {
        answer = JSON.parse((await readSmall(res.body)).toString('utf8'));
      } catch {
        answer = undefined;
      }
      const n = isObject(answer) && typeof answer.inputTokens === 'number' ? answer.inputTokens : null;
      if (n === null)
        return jsonAnswer(
          res,
          502,
          anthropicErrorBody(502, 'Bedrock CountTokens answered without inputTokens.'),
          {},
        );
      return jsonAnswer(res, 200, { input_tokens: n }, {});
    }
    if (!type.includes('application/vnd.amazon.eventstream')) return res;
    const headers: Dispatcher.ResponseData['headers'] = {
      ...res.headers,
      'content-type': 'text/event-stream; charset=utf-8',
    };
    delete headers['content-length'];
    const { anthropicSse } = await import('./eventstream');
    return withBody(res, res.statusCode, headers, anthropicSse(res.body as AsyncIterable<Uint8Array>));
  }

  return {
    id: s.name,
    type: 'bedrock',
    prefix: `/${s.name}`,
    requestIdHeader: 'x-amzn-requestid',
    apis: [messagesApi],
    passthrough: [{ methods: ['POST'], path: COUNT_TOKENS, why: 'counts tokens; free' }],
    // Answered by the bridge, as on an `anthropic` instance (docs/routing.md#model-discovery).
    modelListing: anthropicModelListing,
    configured: true,
    upstreamUrl: (target) => `${endpoint.origin}${basePath}${target}`,
    // Resolving the credentials here makes a missing one the exchange's 503 naming this instance.
    async authHeaders(): Promise<Record<string, string>> {
      await credentials();
      return {};
    },
    errorBody: (status, _code, message) => anthropicErrorBody(status, message),
    // Priced as the Anthropic model a Bedrock id or inference profile names.
    modelFor: (_path, model) => (model === null ? null : priceModelOf(mappedModel(models, model))),
    // And priced from AWS's own entry for the id it goes out with: a regional inference profile
    // (`us.`, `eu.`, …) or an in-region id costs 10% more than a `global.` one for the newer
    // models; the Anthropic model's entry is the fallback for one AWS's data does not list.
    priceAs: (_path, model) =>
      model === null ? undefined : { priceId: 'aws', model: bedrockIdOf(mappedModel(models, model)) },
    send,
  };
}

/**
 * AWS Bedrock's Claude models behind Anthropic's Messages API: `/<name>/v1/messages` is rewritten
 * to InvokeModel (`/model/{id}/invoke` or `/invoke-with-response-stream`), signed with SigV4 from
 * the SDK's default credential chain, and the event-stream answer re-emitted as Anthropic SSE.
 */
export const bedrockFamily: ProviderFamily = {
  type: 'bedrock',
  // SigV4 from the AWS credential chain: there is no key to pool.
  keyPools: false,
  defaultBaseUrl: DEFAULT_ENDPOINT,
  priceId: 'anthropic',
  fields: ['region', 'models'],
  validate,
  configured: () => true,
  create,
  // A name Bedrock does not know is refused there, so only the `models` map's names are listed.
  listedModels: (s) => ({ priceData: false, names: mappedNames(modelsOf(s.options), priceModelOf) }),
};
