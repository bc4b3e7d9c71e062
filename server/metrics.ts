import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ErrorCode } from '../shared/errors';
import type { InterceptionStatus, ToolExecution } from '../shared/interception';
import type { Usage } from '../shared/usage';
import { LabelledCounter, LabelledHistogram } from './labelled-series';
import type { ProviderAdapter } from './providers/types';

/** How often the event-loop lag metrics sample (ms). */
const EVENT_LOOP_SAMPLE_MS = 100;

/** Distinct model label values kept; clients choose model names, so the label set must be bounded. */
const MAX_MODEL_LABELS = 200;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const TOKEN_KINDS = ['input', 'output', 'cacheRead', 'cacheWrite', 'reasoning'] as const;

const STATUSES = ['ok', 'error', 'client_aborted'] as const satisfies readonly InterceptionStatus[];
const REFUSAL_REASONS = [
  'budget_exceeded',
  'rate_limited',
  'model_denied',
  'model_unpriced',
] as const satisfies readonly ErrorCode[];
const ALERT_RULES = [
  'budget_threshold',
  'session_cap',
  'spend_vs_baseline',
  'tokens_vs_baseline',
  'spend_vs_team',
  'request_burst',
  'upstream_key_auth_failed',
] as const;
const TOOL_OUTCOMES = [
  'ok',
  'error',
  'timeout',
  'not_run',
  'cancelled',
] as const satisfies readonly ToolExecution['outcome'][];

/**
 * The label value of series zeroed at start for a label whose values only traffic names (model,
 * client, MCP server and tool): the same value a request without a model is counted under.
 */
const NONE = '';
/** What `detectClient` calls a client it cannot identify. */
const UNKNOWN_CLIENT = 'unknown';

/** Every provider's wire APIs in the registry, as the series label them. */
function registeredApis(adapters: readonly ProviderAdapter[]): readonly { provider: string; api: string }[] {
  const seen = new Set<string>();
  return adapters.flatMap((p) =>
    p.apis.flatMap((a) => {
      const k = `${p.id}\u0000${a.name}`;
      if (seen.has(k)) return [];
      seen.add(k);
      return [{ provider: p.id, api: a.name }];
    }),
  );
}

/**
 * The bridge's Prometheus series, one registry per bridge (tests build several in one process).
 * Labels never carry emails, keys or prompt text; per-user series (by user id) exist only when
 * an admin turns them on.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly models = new Set<string>();
  private readonly perUser: {
    requests: LabelledCounter<'user_id'>;
    cost: LabelledCounter<'user_id'>;
  } | null;

  readonly requests = new LabelledCounter(
    'aibridge_requests_total',
    'Metered model requests, by provider, API, model, client and status (ok, error, client_aborted).',
    ['provider', 'api', 'model', 'client', 'status'],
    this.registry,
  );
  readonly tokens = new LabelledCounter(
    'aibridge_tokens_total',
    'Tokens by kind (input, output, cacheRead, cacheWrite, reasoning), normalised as in docs/api.md.',
    ['provider', 'api', 'model', 'kind'],
    this.registry,
  );
  readonly cost = new LabelledCounter(
    'aibridge_cost_usd_total',
    'Cost in USD of priced requests.',
    ['provider', 'model'],
    this.registry,
  );
  readonly upstreamLatency = new LabelledHistogram(
    'aibridge_upstream_latency_seconds',
    'From sending a request upstream to its response headers.',
    ['provider', 'api'],
    LATENCY_BUCKETS,
    this.registry,
  );
  readonly timeToFirstByte = new LabelledHistogram(
    'aibridge_time_to_first_byte_seconds',
    'From receiving a metered request to relaying the first response byte to the client.',
    ['provider', 'api'],
    LATENCY_BUCKETS,
    this.registry,
  );
  readonly streamsInFlight = new Gauge({
    name: 'aibridge_streams_in_flight',
    help: 'Streamed responses being relayed now.',
    labelNames: ['provider', 'api'] as const,
    registers: [this.registry],
  });
  readonly unknownPrice = new LabelledCounter(
    'aibridge_unknown_price_requests_total',
    'Requests for a model with no known price (their cost is recorded as null, never $0).',
    ['provider', 'model'],
    this.registry,
  );
  readonly failovers = new Counter({
    name: 'aibridge_failovers_total',
    help: 'Upstream attempts left for the next one (routes and failover, docs/routing.md), by instance left, instance tried next and reason.',
    labelNames: ['from', 'to', 'reason'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'aibridge_governance_refusals_total',
    help: 'Requests refused before reaching the provider, by reason (budget_exceeded, rate_limited, model_denied, model_unpriced).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly toolPolicyDecisions = new Counter({
    name: 'aibridge_tool_policy_decisions_total',
    help: 'Tool calls a tool-policy rule matched, by action (deny: replaced by a message; audit: flagged).',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly alerts = new Counter({
    name: 'aibridge_alerts_total',
    help: 'Alerts raised, by rule.',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });
  readonly webhookFailures = new Counter({
    name: 'aibridge_alert_webhook_failures_total',
    help: 'Alert webhook deliveries that failed after every retry.',
    registers: [this.registry],
  });
  readonly auditWrite = new LabelledHistogram(
    'aibridge_audit_write_seconds',
    'From a request ending to its record being durable in the store (a group-commit batch).',
    [],
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    this.registry,
  );
  readonly auditFailures = new Counter({
    name: 'aibridge_audit_write_failures_total',
    help: 'Writes of interception records the store refused (each is retried).',
    registers: [this.registry],
  });
  readonly auditDropped = new Counter({
    name: 'aibridge_audit_dropped_total',
    help: 'Interception records given up after the store kept refusing them (open fail mode only).',
    registers: [this.registry],
  });
  /** Read at scrape time: records handed to the store and not yet durable (the recorder's count). */
  auditQueueSource: () => number = () => 0;
  readonly auditQueue = new Gauge({
    name: 'aibridge_audit_write_queue_depth',
    help: 'Interception records handed to the store and not yet durable.',
    registers: [this.registry],
    // Read as Prometheus scrapes, not set twice a record: a gauge's set hashes its labels.
    collect: () => {
      this.auditQueue.set(this.auditQueueSource());
    },
  });
  /** Providers whose breaker state is reported even before they have a breaker. */
  private breakerProviders: readonly string[] = [];
  /** Read at scrape time: the breakers' current states. */
  /** The audit chain's head, read as Prometheus scrapes (one small read on PostgreSQL). */
  chainHeadSource: () => Promise<{ seq: number }> = async () => ({ seq: 0 });
  readonly auditChainRecords = new Gauge({
    name: 'aibridge_audit_chain_records',
    help: 'Records ever appended to the audit hash chain (the chain head position, pruned records included); it never goes down: kept outside the bridge, it shows a head rolled back with the records.',
    registers: [this.registry],
    collect: async () => {
      const head = await this.chainHeadSource().catch(() => undefined);
      if (head !== undefined) this.auditChainRecords.set(head.seq);
    },
  });
  breakerSource: () => { provider: string; model: string; state: 'closed' | 'open' | 'half-open' }[] =
    () => [];
  readonly breakerState = new Gauge({
    name: 'aibridge_circuit_breaker_state',
    help: 'Circuit breaker per provider and model: 0 closed, 1 half-open, 2 open.',
    labelNames: ['provider', 'model'] as const,
    registers: [this.registry],
    collect: () => {
      this.breakerState.reset();
      const value = { closed: 0, 'half-open': 1, open: 2 } as const;
      const seen = new Set<string>();
      for (const b of this.breakerSource()) {
        seen.add(b.provider);
        this.breakerState.set({ provider: b.provider, model: this.model(b.model) }, value[b.state]);
      }
      // Before a provider's first request it has no breaker: report it closed, not absent.
      for (const provider of this.breakerProviders) {
        if (!seen.has(provider)) this.breakerState.set({ provider, model: NONE }, value.closed);
      }
    },
  });
  readonly keyRequests = new Counter({
    name: 'aibridge_upstream_key_requests_total',
    help: 'Upstream attempts per provider instance and pool key name (docs/routing.md#key-pools).',
    labelNames: ['provider', 'key'] as const,
    registers: [this.registry],
  });
  readonly keyRateLimited = new Counter({
    name: 'aibridge_upstream_key_rate_limited_total',
    help: 'Upstream 429 and 529 answers per provider instance and pool key name, by status; each cools the key down.',
    labelNames: ['provider', 'key', 'status'] as const,
    registers: [this.registry],
  });
  readonly keyAuthFailures = new Counter({
    name: 'aibridge_upstream_key_auth_failures_total',
    help: 'Upstream 401 and 403 answers per provider instance and pool key name; the first takes the key out of rotation.',
    labelNames: ['provider', 'key'] as const,
    registers: [this.registry],
  });
  /** Read at scrape time: every pool key and whether it is cooling down now. */
  keyPoolSource: () => { provider: string; key: string; cooling: boolean }[] = () => [];
  readonly keyCooling = new Gauge({
    name: 'aibridge_upstream_key_cooling',
    help: 'Per provider instance and pool key name: 1 while the key is cooling down after a 429/529, else 0.',
    labelNames: ['provider', 'key'] as const,
    registers: [this.registry],
    collect: () => {
      this.keyCooling.reset();
      for (const k of this.keyPoolSource())
        this.keyCooling.set({ provider: k.provider, key: k.key }, k.cooling ? 1 : 0);
    },
  });
  readonly authFailures = new Counter({
    name: 'aibridge_auth_failures_total',
    help: 'Requests that presented an invalid, revoked or expired bridge key.',
    registers: [this.registry],
  });
  readonly websocketClients = new Gauge({
    name: 'aibridge_websocket_clients',
    help: 'Live event WebSocket clients connected.',
    registers: [this.registry],
  });
  readonly injectedToolCalls = new Counter({
    name: 'aibridge_injected_tool_calls_total',
    help: 'Tool calls the bridge ran for users (injected MCP tools), by server, tool and outcome (ok, error, timeout, not_run, cancelled).',
    labelNames: ['server', 'tool', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly gatewayCalls = new Counter({
    name: 'aibridge_mcp_gateway_calls_total',
    help: 'Tool calls agents made through the MCP gateway (<bridge>/mcp), by server and outcome (ok, error, timeout, cancelled, no_credential, denied, too_many_calls).',
    labelNames: ['server', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly gatewayInFlight = new Gauge({
    name: 'aibridge_mcp_gateway_calls_in_flight',
    help: 'MCP gateway tool calls running on this replica.',
    registers: [this.registry],
  });

  /** `providers`: the instances served, whose series start at 0; none: no series is zeroed ahead. */
  constructor(opts: { perUser?: boolean; providers?: readonly ProviderAdapter[] } = {}) {
    // Event-loop lag sampled every 100 ms, not prom-client's 10: its timer wakes an idle bridge
    // each time, and at 10 ms that was 4 ms of CPU a second doing nothing (1 ms at 100).
    collectDefaultMetrics({
      register: this.registry,
      prefix: 'aibridge_',
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    });
    this.zeroKnownSeries(registeredApis(opts.providers ?? []));
    this.perUser = opts.perUser
      ? {
          requests: new LabelledCounter(
            'aibridge_user_requests_total',
            'Metered requests per user id (AIBRIDGE_METRICS_PER_USER).',
            ['user_id'],
            this.registry,
          ),
          cost: new LabelledCounter(
            'aibridge_user_cost_usd_total',
            'Cost in USD per user id (AIBRIDGE_METRICS_PER_USER).',
            ['user_id'],
            this.registry,
          ),
        }
      : null;
  }

  /**
   * Creates, at 0, every series whose labels are known before the first request, so a dashboard
   * panel (docs/grafana-dashboard.json) shows 0 rather than "No data" on a fresh bridge, and a rate()
   * starts from 0 instead of missing the first increment. Labels that only traffic can name (model,
   * client, MCP server and tool) take one placeholder value; no other series is invented.
   */
  private zeroKnownSeries(apis: readonly { provider: string; api: string }[]): void {
    const providers = [...new Set(apis.map((a) => a.provider))];
    for (const { provider, api } of apis) {
      for (const status of STATUSES)
        this.requests.inc({ provider, api, model: NONE, client: UNKNOWN_CLIENT, status }, 0);
      for (const kind of TOKEN_KINDS) this.tokens.inc({ provider, api, model: NONE, kind }, 0);
      this.upstreamLatency.zero({ provider, api });
      this.timeToFirstByte.zero({ provider, api });
      this.streamsInFlight.set({ provider, api }, 0);
    }
    for (const provider of providers) {
      this.cost.inc({ provider, model: NONE }, 0);
      this.unknownPrice.inc({ provider, model: NONE }, 0);
    }
    for (const reason of REFUSAL_REASONS) this.refusals.inc({ reason }, 0);
    for (const rule of ALERT_RULES) this.alerts.inc({ rule }, 0);
    for (const action of ['deny', 'audit']) this.toolPolicyDecisions.inc({ action }, 0);
    for (const outcome of TOOL_OUTCOMES) this.injectedToolCalls.inc({ server: NONE, tool: NONE, outcome }, 0);
    this.breakerProviders = providers;
  }

  /** The model as a label value: the first MAX_MODEL_LABELS names seen, then `other`. */
  model(model: string | null): string {
    const m = model ?? '';
    if (this.models.has(m)) return m;
    if (this.models.size >= MAX_MODEL_LABELS) return 'other';
    this.models.add(m);
    return m;
  }

  /** Counts one finished interception. */
  interception(r: {
    provider: string;
    api: string;
    model: string | null;
    client: string;
    status: string;
    userId: string;
    usage: Usage;
    costUsd: number | null;
    billedTo?: string;
  }): void {
    const model = this.model(r.model);
    // The cost counters are the organisation's spend: what users paid with their own keys is not.
    const orgCost = r.billedTo === 'user' ? null : r.costUsd;
    this.requests.inc({ provider: r.provider, api: r.api, model, client: r.client, status: r.status });
    for (const kind of TOKEN_KINDS) {
      const n = r.usage[kind];
      if (n > 0) this.tokens.inc({ provider: r.provider, api: r.api, model, kind }, n);
    }
    if (orgCost !== null && orgCost > 0) this.cost.inc({ provider: r.provider, model }, orgCost);
    if (this.perUser) {
      this.perUser.requests.inc({ user_id: r.userId });
      if (orgCost) this.perUser.cost.inc({ user_id: r.userId }, orgCost);
    }
  }
}
