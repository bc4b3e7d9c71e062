import { closeSync, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { type Dispatcher, errors as undiciErrors } from 'undici';
import type { EgressProxy, TimeoutConfig } from '../config';
import { BridgeError, type ServerErrorCode } from '../errors';
import { EgressProxyClosedError, outboundDispatcher } from '../http/egress-proxy';
import type { ProviderAdapter, UpstreamCall } from '../providers/types';
import { placeOf } from '../providers/upstream-request';
import { LeanBody, leanRequest, prematureClose } from './lean-request';

/** One connection pool for all upstreams, with the configured timeouts (through the egress proxy if one is set). */
export function createUpstreamAgent(t: TimeoutConfig, proxy?: EgressProxy): Dispatcher {
  return outboundDispatcher(proxy, {
    connectMs: t.connectMs,
    headersTimeout: t.headersMs,
    bodyTimeout: t.idleMs,
    keepAliveTimeout: 30_000,
  });
}

/** The upstream went quiet mid-response for longer than the idle timeout. */
export class IdleTimeoutError extends Error {
  readonly code: ServerErrorCode = 'upstream_idle_timeout';
  constructor(ms: number) {
    super(`no bytes from the provider for ${ms} ms`);
    this.name = 'IdleTimeoutError';
  }
}

/**
 * Watches the gaps between response chunks. undici's own body timeout runs on a coarse (~1 s)
 * timer; this one is exact, so short idle timeouts mean what they say.
 */
export interface IdleWatchdog {
  touch(): void;
  pause(): void;
  stop(): void;
}

/** The watchdog of an answer that has all arrived: no gap left to watch. */
const NOTHING_TO_WATCH: IdleWatchdog = {
  touch: () => undefined,
  pause: () => undefined,
  stop: () => undefined,
};

/**
 * The watchdog for reading `body`; none when the whole answer has already arrived, as a small JSON
 * one has by the time it is read (a timer armed and cleared for nothing on most requests).
 */
export function answerWatchdog(
  body: unknown,
  ms: number,
  onIdle: (err: IdleTimeoutError) => void,
): IdleWatchdog {
  return body instanceof LeanBody && body.arrived ? NOTHING_TO_WATCH : idleWatchdog(ms, onIdle);
}

export function idleWatchdog(ms: number, onIdle: (err: IdleTimeoutError) => void): IdleWatchdog {
  // Paused while the bridge itself is not reading (waiting on the client); `touch` resumes it.
  let paused = false;
  const timer = setTimeout(() => {
    if (!paused) onIdle(new IdleTimeoutError(ms));
  }, ms);
  timer.unref();
  return {
    touch: () => {
      paused = false;
      // Also re-arms a timer that fired while paused.
      timer.refresh();
    },
    pause: () => {
      paused = true;
    },
    stop: () => clearTimeout(timer),
  };
}

/**
 * What a body's reader answers for each chunk: go on, stop reading, or wait before the next (and
 * then go on or stop).
 */
export type ChunkAnswer = undefined | 'stop' | Promise<undefined | 'stop'>;

/**
 * Feeds a response body's chunks to `each` as they arrive; resolves when the body ends or `each`
 * says stop (the body is then destroyed), rejects on the body's error or a close before its end,
 * as `for await` would. A promise from `each` pauses the body until it settles (the client's
 * socket is full) and says then whether to go on. Listeners instead of an async iterator: no
 * promise, end-of-stream watcher and extra ticks per chunk on the path every answer takes
 * (docs/performance.md#chunk-reader).
 */
export function eachChunk(body: Readable, each: (chunk: Buffer) => ChunkAnswer): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onClose);
      // An error after this (a destroy racing the end) must not go unhandled.
      body.off('error', onError);
      body.on('error', ignore);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onData = (chunk: Buffer): void => {
      let answer: ChunkAnswer;
      try {
        answer = each(chunk);
      } catch (err) {
        settle(err);
        body.destroy();
        return;
      }
      if (answer === undefined) return;
      if (answer === 'stop') {
        settle();
        body.destroy();
        return;
      }
      body.pause();
      answer.then(
        (then) => {
          if (settled) return;
          if (then === 'stop') {
            settle();
            body.destroy();
          } else body.resume();
        },
        (err: unknown) => {
          settle(err);
          body.destroy();
        },
      );
    };
    const onEnd = (): void => settle();
    const onError = (err: Error): void => settle(err);
    const onClose = (): void => settle(prematureClose());
    // `data` last: an answer's body (LeanBody) gives what has come as the listener is added.
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
    body.on('data', onData);
  });
}

function ignore(): void {}

/**
 * Error codes of a resource this machine ran out of, with what it was. Not EADDRNOTAVAIL: it is
 * also what connecting to an IPv6 address gives where IPv6 is off (Docker's default network), a
 * target that is down for the bridge, to count and fail over from.
 */
const LOCAL_SHORTAGE: ReadonlyMap<string, string> = new Map([
  ['EMFILE', 'file descriptors'],
  ['ENFILE', 'file descriptors (the system-wide limit)'],
  ['ENOBUFS', 'socket buffers'],
  ['ENOMEM', 'memory'],
]);

/**
 * A name lookup needs descriptors too (`/etc/hosts`, the resolver's socket): out of them, it fails
 * as a name not found. Whether that is why: can a file be opened now.
 */
function outOfDescriptors(): string | undefined {
  try {
    closeSync(openSync('/dev/null', 'r'));
    return undefined;
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    return code === 'EMFILE' || code === 'ENFILE' ? code : undefined;
  }
}

/**
 * OpenSSL's and Node's codes for a certificate the bridge refused, each with what fixes it: a CA
 * it does not know (most often a TLS-inspecting proxy's or an internal one), a date, or a name.
 */
const TLS_ADVICE: ReadonlyMap<string, string> = new Map([
  ...[
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'UNABLE_TO_GET_ISSUER_CERT',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'CERT_UNTRUSTED',
    'CERT_SIGNATURE_FAILURE',
  ].map((c): [string, string] => [
    c,
    "If a TLS-inspecting proxy or an internal CA signs it, start the bridge with NODE_EXTRA_CA_CERTS naming that CA's certificate.",
  ]),
  ['CERT_HAS_EXPIRED', "It has expired, or this machine's clock is wrong."],
  ['CERT_NOT_YET_VALID', "It is not valid yet, or this machine's clock is wrong."],
  [
    'ERR_TLS_CERT_ALTNAME_INVALID',
    'It names another host: check the base URL (or the https:// proxy) the bridge is given.',
  ],
]);

/**
 * Why an upstream exchange failed, as a gateway error that keeps the cause. `midAnswer`: the
 * provider had answered and its connection broke while the answer came (same code, truer words).
 */
export function upstreamFailure(err: unknown, midAnswer = false): BridgeError {
  if (
    err instanceof IdleTimeoutError ||
    err instanceof undiciErrors.ConnectTimeoutError ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError
  ) {
    return new BridgeError(
      'upstream_timeout',
      `The provider did not answer in time (${(err as Error).message}).`,
      {
        cause: err,
      },
    );
  }
  const code = (err as { code?: string }).code ?? '';
  // The HTTP client refused the request before anything was sent (a header it will not send, a
  // value it cannot): the provider was never asked. Not its failure, so no breaker counts it, and
  // the same request would fail the same way anywhere.
  if (!midAnswer && (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED')) {
    return new BridgeError(
      'invalid_request',
      `The request cannot be sent to the provider as it came (${(err as Error).message}).`,
      { cause: err },
    );
  }
  // This machine out of something a connection needs (descriptors, buffers, memory):
  // the bridge's fault, not the provider's. Counted against its breaker, a replica short of file
  // descriptors for a second refused a healthy model to everyone for 30 s.
  const shortage = LOCAL_SHORTAGE.has(code)
    ? code
    : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? outOfDescriptors()
      : undefined;
  if (!midAnswer && shortage) {
    return new BridgeError(
      'server_busy',
      `The bridge ran out of ${LOCAL_SHORTAGE.get(shortage)} (${shortage}) and could not open a connection to the provider; retry in a moment.`,
      { cause: err, headers: { 'retry-after': '1' } },
    );
  }
  if (code === 'ETIMEDOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new BridgeError('upstream_timeout', undefined, { cause: err });
  }
  // The provider's certificate was not trusted: on a corporate network most often a TLS-inspecting
  // proxy re-signing it with the organisation's CA, which Node does not know. Nothing was sent.
  // Through a proxy's tunnel, undici may wrap it: the cause has the code.
  const tlsCode = [code, (err as { cause?: { code?: string } }).cause?.code ?? ''].find((c) =>
    TLS_ADVICE.has(c),
  );
  if (!midAnswer && tlsCode) {
    // The provider's, or with an https:// egress proxy possibly the proxy's: undici's error does not say which.
    return new BridgeError(
      'upstream_unreachable',
      `A TLS certificate on the way to the provider was refused (${tlsCode}): the provider's, or an https:// egress proxy's. ${TLS_ADVICE.get(tlsCode)}`,
      { cause: err },
    );
  }
  if (!midAnswer && err instanceof EgressProxyClosedError) {
    return new BridgeError(
      'upstream_unreachable',
      'The egress proxy closed the connection before it answered CONNECT: check HTTPS_PROXY (an https:// proxy given as http://?).',
      { cause: err },
    );
  }
  // undici's words for an egress proxy that answered CONNECT with other than 200 (a 407 for
  // credentials it refused, a 403 for a destination it does not allow): the operator's to fix, and
  // "UND_ERR_ABORTED" alone would send them looking at the provider.
  const proxyRefusal = /^Proxy response \((\d{3})\)/.exec((err as Error).message ?? '');
  if (!midAnswer && proxyRefusal) {
    return new BridgeError(
      'upstream_unreachable',
      `The egress proxy refused to open a tunnel to the provider (HTTP ${proxyRefusal[1]} from the proxy).`,
      { cause: err },
    );
  }
  return new BridgeError(
    'upstream_unreachable',
    midAnswer
      ? `The provider's connection broke while it answered (${code || (err as Error).message}).`
      : `The provider could not be reached (${code || (err as Error).message}).`,
    {
      cause: err,
    },
  );
}

/**
 * Sends one request upstream: through the adapter when it sends its own POSTs (a signed request to
 * another path, a binary stream re-framed), else to `upstreamUrl(target)` as it is.
 */
export function sendUpstream(
  adapter: ProviderAdapter,
  method: Dispatcher.HttpMethod,
  call: UpstreamCall,
): Promise<Dispatcher.ResponseData> {
  if (adapter.send && method === 'POST') return adapter.send(call);
  const { origin, path } = placeOf(adapter.upstreamUrl(call.target));
  return leanRequest(call.dispatcher, {
    origin,
    path,
    method,
    headers: call.headers,
    body: call.bytes.length > 0 ? call.bytes : null,
    signal: call.signal,
  });
}
