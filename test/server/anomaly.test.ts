import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { type AnomalyInput, type AnomalyRules, detect } from '../../server/alerts/anomaly';
import type { NewInterception } from '../../server/store/types';
import type { Alert } from '../../shared/spend';
import { AnthropicMock } from '../helpers/anthropic-mock';
import { askMessages } from '../helpers/ask';
import { startBridge, type TestBridge } from '../helpers/bridge';
import { eventually } from '../helpers/eventually';
import { liveClient } from '../helpers/live-client';
import { WebhookReceiver } from '../helpers/webhook-receiver';

const RULES: AnomalyRules = { anomalyFactor: 5, anomalyMinUsd: 1, anomalyMinTokens: 100_000, burstRpm: 60 };
const hours = (n: number, costUsd: number, tokens = 10_000): AnomalyInput['ownActiveHours'] =>
  Array.from({ length: n }, () => ({ costUsd, tokens }));

describe('anomaly rules', () => {
  it('stay quiet on normal history', () => {
    const normal: AnomalyInput = {
      lastHour: { costUsd: 4, tokens: 40_000 },
      lastMinuteRequests: 10,
      ownActiveHours: hours(30, 3, 30_000),
      teammatesLastHourUsd: [2, 3, 5, 4],
    };
    assert.deepEqual(detect(normal, RULES), []);
  });

  it('fire on a spike against the user’s own baseline, saying what was observed and against what', () => {
    const [f, ...rest] = detect(
      {
        lastHour: { costUsd: 40, tokens: 40_000 },
        lastMinuteRequests: 10,
        ownActiveHours: hours(30, 3),
        teammatesLastHourUsd: [],
      },
      RULES,
    );
    assert.equal(rest.length, 0);
    assert.equal(f!.rule, 'spend_vs_baseline');
    assert.equal(f!.observed, 40);
    assert.equal(f!.baseline, 3);
    assert.match(f!.message, /\$40\.00.*13\.3×.*\$3\.00.*30 active hours/);
  });

  it('fire on tokens, against the team median, and on a burst', () => {
    const rules = detect(
      {
        lastHour: { costUsd: 30, tokens: 2_000_000 },
        lastMinuteRequests: 61,
        ownActiveHours: hours(10, 10, 50_000),
        teammatesLastHourUsd: [1, 2, 3, 50],
      },
      RULES,
    ).map((f) => `${f.rule}:${f.baseline}`);
    assert.deepEqual(rules, ['tokens_vs_baseline:50000', 'spend_vs_team:2.5', 'request_burst:60']);
  });

  it('need enough history and a minimum amount before calling anything abnormal', () => {
    const quiet = detect(
      {
        lastHour: { costUsd: 0.5, tokens: 5_000 },
        lastMinuteRequests: 1,
        ownActiveHours: hours(30, 0.01),
        teammatesLastHourUsd: [0.01, 0.01, 0.01],
      },
      RULES,
    );
    assert.deepEqual(quiet, [], 'below the minimum spend');
    const newcomer = detect(
      {
        lastHour: { costUsd: 50, tokens: 5_000 },
        lastMinuteRequests: 1,
        ownActiveHours: hours(2, 1),
        teammatesLastHourUsd: [],
      },
      RULES,
    );
    assert.deepEqual(newcomer, [], 'two active hours are not a baseline');
  });
});

describe('anomaly alerts through the bridge', function () {
  this.timeout(30_000);
  let mock: AnthropicMock;
  let hook: WebhookReceiver;
  let tb: TestBridge;

  before(async () => {
    mock = await new AnthropicMock().start();
    hook = await new WebhookReceiver().start();
    tb = await startBridge(mock.url, {
      AIBRIDGE_ALERT_WEBHOOK_URL: hook.url,
      AIBRIDGE_ANOMALY_MIN_USD: '0.0001',
      AIBRIDGE_BURST_RPM: '0',
    });
  });
  after(async () => {
    await tb.close();
    await hook.stop();
    await mock.stop();
  });

  /** Past activity straight into the store: `perHourUsd` in each of `n` hours over the last days. */
  async function history(user: { id: string; email: string }, n: number, perHourUsd: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const startedAt = new Date(Date.now() - (i + 3) * 7 * 3_600_000).toISOString();
      const rec: NewInterception = {
        id: `int_${randomUUID()}`,
        userId: user.id,
        userEmail: user.email,
        team: null,
        keyId: 'key_history',
        provider: 'anthropic',
        api: 'messages',
        model: 'claude-sonnet-4-5',
        client: 'claude-code',
        sessionId: null,
        startedAt,
        endedAt: startedAt,
        durationMs: 1000,
        status: 'ok',
        httpStatus: 200,
        streamed: true,
        usage: { input: 100, output: 100, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
        costUsd: perHourUsd,
        priceKnown: true,
        prompt: null,
        toolCalls: [],
        error: null,
        upstreamRequestId: null,
        redactions: [],
      };
      await tb.bridge.store.appendInterception(rec);
    }
  }

  async function send(key: string): Promise<void> {
    const res = await askMessages(tb.url, key, { model: 'claude-sonnet-4-5', max_tokens: 32 });
    assert.equal(res.status, 200);
  }

  it('alerts on a user far above their baseline, and not on one in line with theirs', async () => {
    const spiky = await tb.addUser('spiky@example.com');
    const steady = await tb.addUser('steady@example.com');
    const finished: string[] = [];
    // Registered after the bridge's own listener: the watcher has seen each record listed here.
    tb.bridge.recorder.onFinished((rec) => finished.push(rec.userEmail));
    await history(spiky.user, 6, 0.00005);
    await history(steady.user, 6, 0.01);
    for (let i = 0; i < 3; i++) {
      await send(spiky.key);
      await send(steady.key);
    }
    const [got] = await hook.waitFor(1, (r) => r.body.alert.rule === 'spend_vs_baseline');
    const alert = got!.body.alert;
    assert.equal(got!.body.type, 'alert');
    assert.equal(alert.userEmail, 'spiky@example.com');
    assert.equal(alert.kind, 'anomaly');
    close(alert.baseline, 0.00005);
    assert.ok(alert.observed > 5 * alert.baseline);
    assert.match(alert.message, /typical active hour/);
    // A positive signal instead of a sleep: once every steady record has reached the watcher, one more
    // user's spike is raised; the watcher has then run steady's rules too (alerts are logged as raised).
    await eventually(() => finished.filter((e) => e === 'steady@example.com').length === 3, {
      what: "steady's three records to reach the anomaly watcher",
    });
    const marker = await tb.addUser('marker@example.com');
    await history(marker.user, 6, 0.00005);
    await send(marker.key);
    await hook.waitFor(1, (r) => r.body.alert.userEmail === 'marker@example.com');
    const raised = (userId: string) =>
      tb.logs.filter((l) => l.includes('"alertId"') && l.includes(`"userId":"${userId}"`));
    assert.equal(raised(marker.user.id).length, 1, 'alerts show in the log as they are raised');
    assert.deepEqual(raised(steady.user.id), [], 'no alert raised for the steady user');
    assert.ok(!hook.received.some((r) => r.body.alert.userEmail === 'steady@example.com'));
    assert.equal(
      hook.received.filter((r) => r.body.alert.userEmail === 'spiky@example.com').length,
      1,
      'one alert per rule and hour, not one per request',
    );
    const listed = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', tb.adminKey);
    assert.ok(listed.body.items.some((a) => a.id === alert.id));
  });

  it("a spend_vs_team alert (the team's median spend, how many were active) is the admins', not the member's", async () => {
    const mates = await Promise.all(
      ['m1', 'm2', 'm3'].map((n) => tb.addUser(`${n}@squad.example.com`, { team: 'squad' })),
    );
    const big = await tb.addUser('big@squad.example.com', { team: 'squad' });
    const watching = liveClient(tb.url, { key: big.key });
    await new Promise((r) => watching.ws.once('open', r));
    try {
      for (const m of mates) await send(m.key);
      // Six of the same request against the teammates' one each: above 5× their median.
      for (let i = 0; i < 6; i++) await send(big.key);
      const [got] = await hook.waitFor(
        1,
        (r) => r.body.alert.rule === 'spend_vs_team' && r.body.alert.userEmail === 'big@squad.example.com',
      );
      assert.match(got!.body.alert.message, /median of 3 active teammates/);
      const admin = await tb.api<{ items: Alert[] }>(
        'GET',
        `/api/v1/alerts?user=${big.user.id}`,
        tb.adminKey,
      );
      assert.ok(
        admin.body.items.some((a) => a.rule === 'spend_vs_team'),
        'the admin lists it',
      );
      const mine = await tb.api<{ items: Alert[] }>('GET', '/api/v1/alerts', big.key);
      assert.equal(mine.status, 200);
      assert.ok(!mine.body.items.some((a) => a.rule === 'spend_vs_team'), 'the member does not');
      // Events on one socket come in order: once a later request's end has come, the alert raised
      // before it would have too.
      const ended = watching.events.filter((e) => e.type === 'interception.ended').length;
      await send(big.key);
      await eventually(() => watching.events.filter((e) => e.type === 'interception.ended').length > ended, {
        what: "the member's next request on their live feed",
      });
      assert.ok(
        !watching.events.some((e) => e.type === 'alert' && e.alert.rule === 'spend_vs_team'),
        JSON.stringify(watching.events.map((e) => e.type)),
      );
    } finally {
      await watching.close();
    }
  });
});

function close(a: number, b: number): void {
  assert.ok(Math.abs(a - b) < 1e-9, `${a} ≠ ${b}`);
}
