import {
  type Attributes,
  type Context,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { commonJs } from '../core/commonjs';

export interface TracingConfig {
  /** OTLP/HTTP traces URL; undefined turns tracing off. */
  readonly url: string | undefined;
  readonly serviceName: string;
  /** Put prompt text in spans (off by default: prompts are sensitive). */
  readonly capturePrompts: boolean;
}

type Carrier = Record<string, string | string[] | undefined>;

const getter: TextMapGetter<Carrier> = {
  keys: (c) => Object.keys(c),
  get: (c, k) => c[k.toLowerCase()],
};
const setter: TextMapSetter<Record<string, string>> = {
  set: (c, k, v) => {
    c[k] = v;
  },
};

/**
 * OpenTelemetry traces over OTLP/HTTP, on only when an endpoint is configured. Each bridge owns
 * its provider (no global registration), so several bridges in one process trace independently.
 */
export class Tracing {
  private constructor(
    readonly config: TracingConfig,
    private readonly provider: BasicTracerProvider | undefined,
    private readonly tracer: Tracer | undefined,
    private readonly propagator: W3CTraceContextPropagator | undefined,
  ) {}

  /**
   * The SDK, exporter and propagator are loaded only when an endpoint is configured: most bridges
   * never trace, and the SDK is megabytes of resident memory (docs/performance.md, idle RSS).
   */
  static async create(config: TracingConfig): Promise<Tracing> {
    if (!config.url) return new Tracing(config, undefined, undefined, undefined);
    const [{ W3CTraceContextPropagator }, { OTLPTraceExporter }, { resourceFromAttributes }, sdk] =
      await Promise.all([
        commonJs(import('@opentelemetry/core')),
        commonJs(import('@opentelemetry/exporter-trace-otlp-http')),
        commonJs(import('@opentelemetry/resources')),
        commonJs(import('@opentelemetry/sdk-trace-base')),
      ]);
    const provider = new sdk.BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': config.serviceName }),
      spanProcessors: [
        new sdk.BatchSpanProcessor(new OTLPTraceExporter({ url: config.url }), { scheduledDelayMillis: 500 }),
      ],
    });
    return new Tracing(config, provider, provider.getTracer('aibridge'), new W3CTraceContextPropagator());
  }

  get enabled(): boolean {
    return this.tracer !== undefined;
  }

  /** Starts a span, continuing the caller's W3C `traceparent` when it sent one. */
  startServerSpan(
    name: string,
    headers: Carrier,
    attributes: Attributes,
  ): { span: Span; ctx: Context } | undefined {
    if (!this.tracer || !this.propagator) return undefined;
    const parent = this.propagator.extract(ROOT_CONTEXT, headers, getter);
    const span = this.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
    return { span, ctx: trace.setSpan(parent, span) };
  }

  startChild(
    name: string,
    parent: Context,
    attributes: Attributes,
  ): { span: Span; ctx: Context } | undefined {
    if (!this.tracer) return undefined;
    const span = this.tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent);
    return { span, ctx: trace.setSpan(parent, span) };
  }

  /** `traceparent` (and `tracestate`) for a request sent in `ctx`. */
  inject(ctx: Context): Record<string, string> {
    const out: Record<string, string> = {};
    const propagator = this.propagator;
    if (propagator) context.with(ctx, () => propagator.inject(ctx, out, setter));
    return out;
  }

  static fail(span: Span, type: string, message: string): void {
    span.setAttribute('error.type', type);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
  }

  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}
