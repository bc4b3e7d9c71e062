import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { UsageSeries } from '../shared/admin';

/** Distinguishable on white and readable for most colour vision (Okabe–Ito). */
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#F0E442', '#000000'];

/** Axis ticks: enough decimals to tell small amounts apart (a few requests cost fractions of a cent). */
function axisUsd(v: number): string {
  if (v === 0) return '$0';
  if (Math.abs(v) < 0.01) return `$${v.toFixed(4)}`;
  if (Math.abs(v) < 10) return `$${v.toFixed(2)}`;
  return `$${Math.round(v)}`;
}

/**
 * Spend over time, one line per group, drawn by uPlot on a canvas. Group names reach the chart
 * only as series labels, which uPlot writes as text.
 */
export function SpendChart({ data, height = 260 }: { data: UsageSeries; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const xs = data.times.map((t) => Date.parse(t) / 1000);
    const opts: uPlot.Options = {
      width: Math.max(320, el.clientWidth),
      height,
      scales: { x: { time: true } },
      axes: [{}, { values: (_u, vals) => vals.map(axisUsd), size: 70 }],
      series: [
        { label: data.step === 'day' ? 'day' : 'hour' },
        ...data.series.map((s, i) => ({
          label: s.key,
          stroke: COLOURS[i % COLOURS.length]!,
          width: 2,
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : `$${v.toFixed(4)}`),
        })),
      ],
    };
    const plot = new uPlot(opts, [xs, ...data.series.map((s) => s.costUsd)], el);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(320, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [data, height]);
  return <div class="chart" ref={box} data-testid="spend-chart" />;
}
