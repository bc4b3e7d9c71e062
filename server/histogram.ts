import type { Metric, Registry } from 'prom-client';

/** One label set's observations: counts per bucket (not yet cumulative), their sum and number. */
interface Series {
  labels: Record<string, string>;
  counts: number[];
  sum: number;
  count: number;
}

/** A metric's report as prom-client's registry reads it (`get()`); prom-client does not export the type. */
export interface HistogramReport {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: { metricName: string; labels: Record<string, string | number>; value: number }[];
}

/**
 * A Prometheus histogram for the series every request observes (latency to headers, time to first
 * byte, audit write). prom-client's Histogram validates and hashes the label object, builds a
 * closure and keys its buckets by the bound turned into a string on every observation: about
 * 2 µs each on the request path, three per request (docs/performance.md#histograms). This one finds
 * a label set's counts by its values joined, and counts into an array.
 *
 * It is registered with the bridge's prom-client registry and reports in prom-client's format, so
 * /metrics is still written by prom-client: the same names, labels, buckets and `+Inf`, `_sum`
 * and `_count` lines as a prom-client Histogram.
 */
export class LabelledHistogram<L extends string = never> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    // The registry takes any object that reports as a metric does; its types name only its own.
    registry.registerMetric(this as unknown as Metric);
    // Without labels there is one series, reported from the start (as prom-client's).
    if (labelNames.length === 0) this.seriesOf({} as Record<L, string>);
  }

  observe(labels: Readonly<Record<L, string>>, value: number): void {
    if (!Number.isFinite(value)) return;
    const s = this.seriesOf(labels);
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        s.counts[i]! += 1;
        break;
      }
    }
    s.sum += value;
    s.count += 1;
  }

  /** Makes a label set's series exist at 0, so it is reported before its first observation. */
  zero(labels: Readonly<Record<L, string>>): void {
    this.seriesOf(labels);
  }

  reset(): void {
    this.series.clear();
  }

  get(): HistogramReport {
    const values: HistogramReport['values'] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += s.counts[i]!;
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { le: this.buckets[i]!, ...s.labels },
          value: acc,
        });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...s.labels }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: { ...s.labels }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { ...s.labels }, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }

  private seriesOf(labels: Readonly<Record<L, string>>): Series {
    const names = this.labelNames;
    let key = '';
    for (let i = 0; i < names.length; i++) key += i === 0 ? labels[names[i]!] : `\u0000${labels[names[i]!]}`;
    let s = this.series.get(key);
    if (s === undefined) {
      const own: Record<string, string> = {};
      for (const n of names) own[n] = String(labels[n]);
      s = { labels: own, counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    return s;
  }
}
