import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { LabelledCounter, LabelledHistogram } from '../../server/labelled-series';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Both registries' exposition, one metric each, under the same name. */
async function expositions(
  observe: (h: { observe(labels: Record<string, string>, v: number): void }) => void,
  labelNames: string[],
): Promise<[string, string]> {
  const ours = new Registry();
  const theirs = new Registry();
  const a = new LabelledHistogram('x_seconds', 'Help text.', labelNames, BUCKETS, ours);
  const b = new Histogram({
    name: 'x_seconds',
    help: 'Help text.',
    labelNames,
    buckets: BUCKETS,
    registers: [theirs],
  });
  observe(a);
  observe({ observe: (labels, v) => (labelNames.length === 0 ? b.observe(v) : b.observe(labels, v)) });
  return [await ours.metrics(), await theirs.metrics()];
}

describe('the request-path series (server/labelled-series.ts)', () => {
  it('a histogram writes exactly the exposition prom-client writes for the same observations', async () => {
    const values = [0, 0.004, 0.005, 0.0051, 0.2, 0.99, 1, 7, 119.9, 120, 121, 5000];
    const [ours, theirs] = await expositions(
      (h) => {
        for (const [i, v] of values.entries()) {
          h.observe({ provider: 'anthropic', api: i % 3 === 0 ? 'messages' : 'count_tokens' }, v);
          h.observe({ provider: 'openai', api: 'responses' }, v / 7);
        }
      },
      ['provider', 'api'],
    );
    assert.equal(ours, theirs);
    // Cumulative buckets: messages saw 0, 0.0051, 1 and 120; two are at or below 0.01.
    assert.match(ours, /x_seconds_bucket\{le="0\.01",provider="anthropic",api="messages"\} 2\n/);
    assert.match(ours, /x_seconds_count\{provider="openai",api="responses"\} 12\n/);
  });

  it('reports a series without labels from the start, and a zeroed label set before it is observed', async () => {
    const [ours, theirs] = await expositions(() => {}, []);
    assert.equal(ours, theirs);
    assert.match(ours, /x_seconds_count 0\n/);
    const registry = new Registry();
    const h = new LabelledHistogram('y_seconds', 'Help.', ['provider'], [1], registry);
    h.zero({ provider: 'gemini' });
    assert.match(await registry.metrics(), /y_seconds_bucket\{le="\+Inf",provider="gemini"\} 0\n/);
    h.observe({ provider: 'gemini' }, 0.5);
    h.observe({ provider: 'gemini' }, 2);
    const text = await registry.metrics();
    assert.match(text, /y_seconds_bucket\{le="1",provider="gemini"\} 1\n/);
    assert.match(text, /y_seconds_sum\{provider="gemini"\} 2\.5\n/);
  });

  it('a counter writes exactly what prom-client writes for the same increments, and refuses to go down', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const labelNames = ['provider', 'model', 'kind'];
    const a = new LabelledCounter('t_total', 'Tokens.', labelNames, ours);
    const b = new Counter({ name: 't_total', help: 'Tokens.', labelNames, registers: [theirs] });
    for (const c of [a, b]) {
      c.inc({ provider: 'anthropic', model: '', kind: 'input' }, 0);
      c.inc({ provider: 'anthropic', model: 'claude-sonnet-4-5', kind: 'input' }, 1200);
      c.inc({ provider: 'anthropic', model: 'claude-sonnet-4-5', kind: 'output' }, 120);
      c.inc({ provider: 'anthropic', model: 'claude-sonnet-4-5', kind: 'input' }, 0.5);
      c.inc({ provider: 'openai', model: 'a "quoted"\\name\nwith a line', kind: 'input' });
    }
    const text = await ours.metrics();
    assert.equal(text, await theirs.metrics());
    assert.match(text, /t_total\{provider="anthropic",model="claude-sonnet-4-5",kind="input"\} 1200\.5\n/);
    assert.match(text, /t_total\{provider="anthropic",model="",kind="input"\} 0\n/);
    assert.throws(() => a.inc({ provider: 'anthropic', model: '', kind: 'input' }, -1), /cannot go down/);
    assert.throws(
      () => a.inc({ provider: 'anthropic', model: '', kind: 'input' }, Number.NaN),
      /not a valid number/,
    );
  });
});
