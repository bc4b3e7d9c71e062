import type { IncomingHttpHeaders } from 'node:http';
import type { Context, Span } from '@opentelemetry/api';
import type { InterceptionError, InterceptionStatus } from '../../shared/interception';
import type { InterceptionStart } from '../core/facts';
import { withoutUrlSecrets } from '../core/url-secrets';
import type { Metrics } from '../metrics';
import type { ResponseFacts } from '../providers/types';
import { Tracing } from './tracing';

/** What the proxy tells telemetry about one metered exchange, in order. */
export interface ExchangeObserver {
  /** Headers to add to the upstream request (W3C trace context), called as it is sent. */
  upstreamStart(method: string, url: string): Record<string, string>;
  upstreamHeaders(status: number): void;
  firstByte(): void;
  streamOpened(): void;
  end(outcome: {
    status: InterceptionStatus;
    httpStatus: number;
    response: ResponseFacts | null;
    error: InterceptionError | null;
  }): void;
}

/**
 * Turns the proxy's milestones into metrics (latency to headers, time to first byte, streams in
 * flight) and, when tracing is on, a GenAI span per request with a child span for the upstream call.
 */
export class ExchangeTelemetry {
  constructor(
    private readonly metrics: Metrics,
    private readonly tracing: Tracing,
    /**
     * The prompt as the audit record keeps it (secrets blanked, docs/audit.md): a span is one more
     * place it is published, and a trace backend is read by more people than the audit log.
     */
    private readonly redactPrompt: (prompt: string) => string,
  ) {}

  begin(start: InterceptionStart, headers: IncomingHttpHeaders): ExchangeObserver {
    const { metrics, tracing } = this;
    const labels = { provider: start.provider, api: start.api };
    const t0 = performance.now();
    let sentAt = t0;
    let sawFirstByte = false;
    let streaming = false;
    let ended = false;
    // Without tracing (the default) its span's name and attributes are not even built.
    const root = tracing.enabled ? rootSpan(tracing, start, headers, this.redactPrompt) : undefined;
    let upstream: { span: Span; ctx: Context } | undefined;

    return {
      upstreamStart(method, url) {
        sentAt = performance.now();
        if (!root) return {};
        upstream = tracing.startChild(`${method} upstream`, root.ctx, {
          'http.request.method': method,
          // What goes upstream carries no client credential (query-credential.ts); an admin's
          // base URL may (a proxy's password, an OpenAI-compatible server's `?key=`).
          'url.full': withoutUrlSecrets(url),
          'gen_ai.system': start.provider,
        });
        return upstream ? tracing.inject(upstream.ctx) : {};
      },
      upstreamHeaders(status) {
        metrics.upstreamLatency.observe(labels, (performance.now() - sentAt) / 1000);
        upstream?.span.setAttribute('http.response.status_code', status);
      },
      firstByte() {
        if (sawFirstByte) return;
        sawFirstByte = true;
        metrics.timeToFirstByte.observe(labels, (performance.now() - t0) / 1000);
      },
      streamOpened() {
        streaming = true;
        metrics.streamsInFlight.inc(labels);
      },
      end({ status, httpStatus, response, error }) {
        if (ended) return;
        ended = true;
        if (streaming) metrics.streamsInFlight.dec(labels);
        if (!root) return;
        const span = root.span;
        span.setAttribute('http.response.status_code', httpStatus);
        span.setAttribute('aibridge.status', status);
        if (response) {
          const u = response.usage;
          if (response.model) span.setAttribute('gen_ai.response.model', response.model);
          span.setAttribute('gen_ai.usage.input_tokens', u.input + u.cacheRead + u.cacheWrite);
          span.setAttribute('gen_ai.usage.output_tokens', u.output);
          span.setAttribute('gen_ai.usage.cache_read.input_tokens', u.cacheRead);
          span.setAttribute('gen_ai.usage.cache_creation.input_tokens', u.cacheWrite);
          if (response.finishReasons?.length)
            span.setAttribute('gen_ai.response.finish_reasons', response.finishReasons);
        }
        if (error) Tracing.fail(span, error.type, error.message);
        if (upstream) {
          if (error && httpStatus >= 400) Tracing.fail(upstream.span, error.type, error.message);
          upstream.span.end();
        }
        span.end();
      },
    };
  }
}

/** The request's root span, continuing the caller's trace. */
function rootSpan(
  tracing: Tracing,
  start: InterceptionStart,
  headers: IncomingHttpHeaders,
  redactPrompt: (prompt: string) => string,
): { span: Span; ctx: Context } | undefined {
  return tracing.startServerSpan(`chat ${start.request.model ?? ''}`.trim(), headers, {
    'gen_ai.operation.name': 'chat',
    // The server span of an HTTP request (every metered one is a POST), as docs/operations.md lists.
    'http.request.method': 'POST',
    'gen_ai.system': start.provider,
    'gen_ai.provider.name': start.provider,
    'gen_ai.request.model': start.request.model ?? '',
    ...(start.request.maxOutputTokens !== null
      ? { 'gen_ai.request.max_tokens': start.request.maxOutputTokens }
      : {}),
    'aibridge.api': start.api,
    'aibridge.interception_id': start.id,
    'aibridge.user_id': start.principal.user.id,
    'aibridge.client': start.client,
    // Never more than the record keeps: none for a team whose capture level is `none`.
    ...(tracing.config.capturePrompts && start.request.prompt && start.capture !== 'none'
      ? { 'gen_ai.prompt': redactPrompt(start.request.prompt) }
      : {}),
  });
}
