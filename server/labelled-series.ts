import type { Metric, Registry } from 'prom-client';

/**
 * The Prometheus series every request touches (requests, tokens and cost counted, latency to
 * headers, time to first byte and the audit write observed), kept by the bridge rather than by
 * prom-client's Counter and Histogram. Those validate and hash the label object (sorting its
 * names), and a histogram builds a closure and keys its buckets by the bound turned into a
 * string, on every update: about 2 µs per histogram observation and 1 µs per counter increment on
 * the request path, seven or more per request (docs/performance.md#labelled-series). These find a
 * label set's series through a map per label, and add to numbers.
 *
 * They register with the bridge's prom-client registry and report in its format, so /metrics is
 * still written by prom-client, line for line as its own Counter and Histogram would write it
 * (test/server/labelled-series.test.ts compares the two).
 */

/** A metric's report as prom-client's registry reads it (`get()`); prom-client does not export the type. */
export interface SeriesReport {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: { metricName?: string; labels: Record<string, string | number>; value: number }[];
}

/**
 * The series of one metric by label set: a map per label, in the metric's name order, down to the
 * series. Label values are strings the request already holds (a provider id, the model label), so
 * each step hashes a string whose hash V8 has cached; a key of the values joined was a new string
 * to build and hash on every update (docs/performance.md#labelled-series).
 */
class SeriesMap<L extends string, S> {
  private root = new Map<string, unknown>();
  private list: { labels: Record<string, string>; s: S }[] = [];

  constructor(
    private readonly labelNames: readonly L[],
    private readonly fresh: () => S,
  ) {}

  get(labels: Readonly<Record<L, string>>): S {
    const names = this.labelNames;
    const last = names.length - 1;
    let node = this.root;
    for (let i = 0; i < last; i++) {
      const v = labels[names[i]!];
      let next = node.get(v) as Map<string, unknown> | undefined;
      if (next === undefined) {
        next = new Map();
        node.set(v, next);
      }
      node = next;
    }
    // No labels: the one series sits under the empty value.
    const leaf = last < 0 ? '' : labels[names[last]!];
    let entry = node.get(leaf) as { labels: Record<string, string>; s: S } | undefined;
    if (entry === undefined) {
      const own: Record<string, string> = {};
      for (const n of names) own[n] = String(labels[n]);
      entry = { labels: own, s: this.fresh() };
      node.set(leaf, entry);
      this.list.push(entry);
    }
    return entry.s;
  }

  entries(): IterableIterator<{ labels: Record<string, string>; s: S }> {
    return this.list.values();
  }

  clear(): void {
    this.root = new Map();
    this.list = [];
  }
}

/** One label set's observations: counts per bucket (not yet cumulative), their sum and number. */
interface Observations {
  counts: number[];
  sum: number;
  count: number;
}

/** A histogram with prom-client's semantics: `le` buckets, `+Inf`, `_sum` and `_count`. */
export class LabelledHistogram<L extends string = never> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series: SeriesMap<L, Observations>;

  constructor(
    readonly name: string,
    readonly help: string,
    labelNames: readonly L[],
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    this.series = new SeriesMap(labelNames, () => ({
      counts: new Array<number>(buckets.length).fill(0),
      sum: 0,
      count: 0,
    }));
    // The registry takes any object that reports as a metric does; its types name only its own.
    registry.registerMetric(this as unknown as Metric);
    // Without labels there is one series, reported from the start (as prom-client's).
    if (labelNames.length === 0) this.series.get({} as Record<L, string>);
  }

  observe(labels: Readonly<Record<L, string>>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: not a valid number: ${value}`);
    const s = this.series.get(labels);
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
    this.series.get(labels);
  }

  reset(): void {
    this.series.clear();
  }

  get(): SeriesReport {
    const values: SeriesReport['values'] = [];
    for (const { labels, s } of this.series.entries()) {
      let acc = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        acc += s.counts[i]!;
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { le: this.buckets[i]!, ...labels },
          value: acc,
        });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: { ...labels }, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: { ...labels }, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}

/** A counter with prom-client's semantics: it only goes up; `inc(labels, 0)` makes a series exist. */
export class LabelledCounter<L extends string = never> {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly series: SeriesMap<L, { value: number }>;

  constructor(
    readonly name: string,
    readonly help: string,
    labelNames: readonly L[],
    registry: Registry,
  ) {
    this.series = new SeriesMap(labelNames, () => ({ value: 0 }));
    registry.registerMetric(this as unknown as Metric);
  }

  inc(labels: Readonly<Record<L, string>>, value = 1): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: not a valid number: ${value}`);
    if (value < 0) throw new Error(`${this.name}: a counter cannot go down`);
    this.series.get(labels).value += value;
  }

  reset(): void {
    this.series.clear();
  }

  get(): SeriesReport {
    const values: SeriesReport['values'] = [];
    for (const { labels, s } of this.series.entries()) values.push({ labels: { ...labels }, value: s.value });
    return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values };
  }
}
