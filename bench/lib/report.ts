import type { Percentiles } from './stats';
import { round } from './stats';

export type PathId =
  | 'direct'
  | 'floor'
  | 'bridge'
  | 'bridgeObs'
  | 'bridgePg'
  /** The PostgreSQL store with AIBRIDGE_AUDIT_ACK=sent, as the embedded store acks: the 200 rps phase only, no column. */
  | 'bridgePgSent'
  | 'portkey'
  | 'bridgeBedrock'
  | 'bridgeVertex'
  | 'bridgeGemini'
  | 'bridgeVertexGemini'
  | 'bridgeAzure'
  | 'bridgeCompat';

/** The columns of the table, in order. */
export const COLUMNS: readonly { id: PathId; title: string }[] = [
  { id: 'direct', title: 'direct' },
  { id: 'floor', title: 'bare proxy' },
  { id: 'bridge', title: 'AI Bridge' },
  { id: 'bridgeObs', title: 'Bridge + metrics & traces' },
  { id: 'bridgePg', title: 'Bridge + PostgreSQL' },
  { id: 'portkey', title: 'Portkey' },
  // The same mock answers, reached through a cloud family: what signing, tokens and re-framing add.
  { id: 'bridgeBedrock', title: 'Bridge → Bedrock' },
  { id: 'bridgeVertex', title: 'Bridge → Vertex' },
  // Gemini's own API, client and upstream: its meter and usage, on a body of the same turn.
  { id: 'bridgeGemini', title: 'Bridge → Gemini' },
  // The same Gemini turn sent on to Vertex AI: a google-auth-library token and the Vertex path.
  { id: 'bridgeVertexGemini', title: 'Bridge → Vertex Gemini' },
  // OpenAI's Chat Completions through the OpenAI families: Azure's v1 API and a self-hosted server.
  { id: 'bridgeAzure', title: 'Bridge → Azure OpenAI' },
  { id: 'bridgeCompat', title: 'Bridge → OpenAI-compatible' },
];

export interface Latency extends Percentiles {
  errors: number;
  firstError: string | null;
  achievedRps: number;
}

export interface StreamFigures {
  /** Streams started per second (open loop). */
  rate: number;
  /** The proxy's CPU time per stream. */
  cpuMsPerStream: number | null;
  n: number;
  errors: number;
  eventsPerStream: number;
  /** Send to first body byte. */
  ttfb: Percentiles;
  /** Per stream: mean time from the mock writing an event to its arrival. */
  eventDelay: Percentiles;
  /** Per stream: mean time between events as they arrive. */
  gap: Percentiles;
  /** Send to last byte. */
  total: Percentiles;
}

export interface PathResult {
  label: string;
  /** `measured`, or `n/a (why)`. */
  status: string;
  /** Per rate (`rate500`): latency, and the proxy's CPU per 1,000 requests at that rate. */
  json: Record<string, Latency & { cpuMsPerKRequests?: number | null }>;
  saturation?: Latency & {
    /** The closed loop's connections (PLAN.satConnections). */
    connections?: number;
    cpuMsPerKRequests: number | null;
    /** The main thread's share: what a `--cpu-prof` profile can explain. */
    cpuMainThreadMsPerKRequests?: number | null;
  };
  /**
   * The embedded and PostgreSQL bridges at saturation with more connections (PLAN.wideConnections):
   * acking `stored`, each of 16 connections sits out a commit per request, which idles the machine
   * before it is saturated; the ceiling is the most either serves at either concurrency.
   */
  saturationWide?: Latency & { connections: number };
  /** Agent turns (a ~60 KB Claude Code-shaped body) in a closed loop: the bare proxy and the bridge. */
  agentTurn?: Latency & { cpuMsPerKRequests: number | null };
  stream?: StreamFigures;
  memory?: Record<string, number | string>;
}

export interface AuditSide {
  records: number;
  journalMB: number;
  genMs: number;
  openMs: number;
  /** The same store opened again after a clean close: from its checkpoint. */
  checkpointOpenMs: number;
  /** Every record read back in order (an export's, a verify's reading). */
  scanMs: number;
  heapMB: number;
  rssMB: number;
  /** One awaited append: write + fdatasync included. */
  write: Percentiles;
  /** The synchronous part of an append, what the event loop pays. */
  syncPart: Percentiles;
  /** Many appends at once, sharing fsyncs: wall time per record. */
  burstPerRecordMs: number;
}

export interface Goal {
  text: string;
  value: number | null;
  limit: string;
  met: boolean | null;
}

export interface Meta {
  date: string;
  title: string;
  rates: readonly number[];
  streamRate: number;
  satConnections: number;
  holdStreams: number;
  auditRecordsWritten: number;
  stealPercent: number;
}

export const GOALS = {
  addedP50At500: 0.25,
  addedP99At500: 1,
  rpsVsPortkey: 2,
  ttfbAdded: 0.5,
  rssIdleMB: 100,
  rssStreamsMB: 300,
  auditRatio: 1.5,
} as const;

/**
 * The rate at which every path's CPU per request is also compared: the load of issue 21's latency
 * targets, which every path serves (saturation runs each at its own).
 */
export const SAME_LOAD_RPS = 500;

type Pick = (r: PathResult) => number | undefined;

const measured = (r: PathResult | undefined): r is PathResult => r?.status === 'measured';

function fmt(x: number | null | undefined, digits = 3, sign = false): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a';
  const s = x.toFixed(digits);
  return sign && x >= 0 ? `+${s}` : s;
}

function k(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n);
}

/** The goals, judged on the bridge's figures. */
export function judge(results: Record<string, PathResult>, audit: AuditSide[]): Record<string, Goal> {
  const direct = results.direct as PathResult;
  const bridge = results.bridge as PathResult;
  const portkey = results.portkey;
  const added = (pick: Pick): number | null => {
    const v = pick(bridge);
    const d = pick(direct);
    return v === undefined || d === undefined ? null : v - d;
  };
  const low = audit[0];
  const high = audit.at(-1);
  const goal = (text: string, value: number | null, limit: number, atLeast = false): Goal => ({
    text,
    value: value === null || !Number.isFinite(value) ? null : round(value),
    limit: `${atLeast ? '≥' : '≤'} ${limit}`,
    met: value === null || !Number.isFinite(value) ? null : atLeast ? value >= limit : value <= limit,
  });
  const bridgeRps = bridge.saturation?.achievedRps ?? 0;
  const portkeyRps = measured(portkey) ? (portkey.saturation?.achievedRps ?? 0) : 0;
  return {
    addedP50At500: goal(
      'added p50 at 500 rps, ms',
      added((r) => r.json.rate500?.p50),
      GOALS.addedP50At500,
    ),
    addedP99At500: goal(
      'added p99 at 500 rps, ms',
      added((r) => r.json.rate500?.p99),
      GOALS.addedP99At500,
    ),
    rpsVsPortkey: goal(
      'max rps, × Portkey’s',
      portkeyRps > 0 ? bridgeRps / portkeyRps : null,
      GOALS.rpsVsPortkey,
      true,
    ),
    ttfbAdded: goal(
      'stream TTFB added (p50), ms',
      added((r) => r.stream?.ttfb.p50),
      GOALS.ttfbAdded,
    ),
    rssIdleMB: goal('RSS idle, MB', Number(bridge.memory?.idleMB ?? Number.NaN), GOALS.rssIdleMB),
    rssStreamsMB: goal(
      'RSS with 1000 open streams, MB',
      Number(bridge.memory?.withStreamsMB ?? Number.NaN),
      GOALS.rssStreamsMB,
    ),
    auditRatio: goal(
      `audit write at ${k(high?.records ?? 0)} records, × at ${k(low?.records ?? 0)} (mean)`,
      low && high ? high.write.mean / low.write.mean : null,
      GOALS.auditRatio,
    ),
  };
}

/** One table: a row per figure, a column per path; latency columns other than direct are added over direct. */
export function renderTable(
  results: Record<string, PathResult>,
  audit: AuditSide[],
  goals: Record<string, Goal>,
  meta: Meta,
): string {
  const direct = results.direct as PathResult;
  const cols = COLUMNS.map((c) => results[c.id]);
  const rows: string[][] = [];
  const mark = (g: Goal | undefined): string =>
    !g ? '' : g.met === null ? 'n/a' : g.met ? 'met' : '**missed**';
  const push = (label: string, cells: string[], goal?: Goal, limit?: string): void => {
    rows.push([label, ...cells, limit ?? (goal ? goal.limit : ''), mark(goal)]);
  };
  /** Direct absolute, the others added over direct. */
  const addedCells = (pick: Pick, digits = 3): string[] =>
    cols.map((r, i) => {
      if (!measured(r)) return 'n/a';
      const v = pick(r);
      if (i === 0) return fmt(v, digits);
      const d = pick(direct);
      return v === undefined || d === undefined ? 'n/a' : fmt(v - d, digits, true);
    });
  const absCells = (pick: Pick, digits = 0, from = 0): string[] =>
    cols.map((r, i) => (i < from ? '' : measured(r) ? fmt(pick(r), digits) : 'n/a'));

  for (const rps of meta.rates) {
    for (const q of ['p50', 'p99', 'p999'] as const) {
      const goal =
        rps === 500 && q === 'p50'
          ? goals.addedP50At500
          : rps === 500 && q === 'p99'
            ? goals.addedP99At500
            : undefined;
      const name = q === 'p999' ? 'p99.9' : q;
      push(
        `JSON at ${rps} rps, ${name}, ms`,
        addedCells((r) => r.json[`rate${rps}`]?.[q]),
        goal,
        goal ? `≤ +${goal === goals.addedP50At500 ? GOALS.addedP50At500 : GOALS.addedP99At500}` : '',
      );
    }
  }
  for (const q of ['p50', 'p99', 'p999'] as const) {
    push(
      `JSON saturated, ${q === 'p999' ? 'p99.9' : q}, ms`,
      addedCells((r) => r.saturation?.[q]),
    );
  }
  const rps = absCells((r) => r.saturation?.achievedRps);
  const ratio = goals.rpsVsPortkey?.value;
  if (ratio !== null && ratio !== undefined) rps[2] = `${rps[2]} (${ratio.toFixed(1)}× Portkey)`;
  push(`max rps (${meta.satConnections} connections)`, rps, goals.rpsVsPortkey, '≥ 2× Portkey');
  const wide = Object.values(results).find((r) => r.saturationWide)?.saturationWide?.connections;
  if (wide !== undefined)
    push(
      `max rps (${wide} connections), the two stores`,
      absCells((r) => r.saturationWide?.achievedRps),
    );
  push(
    'proxy CPU per 1k requests, ms',
    absCells((r) => r.saturation?.cpuMsPerKRequests ?? undefined, 0, 1),
  );
  push(
    '… of which its main thread, ms',
    absCells((r) => r.saturation?.cpuMainThreadMsPerKRequests ?? undefined, 0, 1),
  );
  push(
    `proxy CPU per 1k requests at ${SAME_LOAD_RPS} rps, ms`,
    absCells((r) => r.json[`rate${SAME_LOAD_RPS}`]?.cpuMsPerKRequests ?? undefined, 0, 1),
  );
  // Only the bare proxy and the bridge are sent agent turns: the other columns stay empty.
  const agentCells = (
    pick: (a: NonNullable<PathResult['agentTurn']>) => number | null | undefined,
  ): string[] => cols.map((r) => (r?.agentTurn ? fmt(pick(r.agentTurn), 0) : ''));
  push(
    'agent turn (60 KB): proxy CPU per 1k, ms',
    agentCells((a) => a.cpuMsPerKRequests),
  );
  push(
    'agent turn (60 KB): max rps',
    agentCells((a) => a.achievedRps),
  );
  const sr = `${meta.streamRate}/s`;
  push(
    `stream TTFB p50 at ${sr}, ms`,
    addedCells((r) => r.stream?.ttfb.p50),
    goals.ttfbAdded,
    `≤ +${GOALS.ttfbAdded}`,
  );
  push(
    `stream TTFB p99 at ${sr}, ms`,
    addedCells((r) => r.stream?.ttfb.p99),
  );
  push(
    `stream per-event delay p50 at ${sr}, ms`,
    addedCells((r) => r.stream?.eventDelay.p50),
  );
  push(
    `stream per-event delay p99 at ${sr}, ms`,
    addedCells((r) => r.stream?.eventDelay.p99),
  );
  push(
    `stream last byte p50 at ${sr}, ms`,
    addedCells((r) => r.stream?.total.p50),
  );
  push(
    'proxy CPU per stream, ms',
    absCells((r) => r.stream?.cpuMsPerStream ?? undefined, 2, 1),
  );
  const memCells = (key: string): string[] =>
    cols.map((r, i) => {
      if (i < 2) return '';
      const v = r?.memory?.[key];
      return typeof v === 'number' ? fmt(v, 0) : 'n/a';
    });
  push('RSS at start, MB', memCells('startMB'));
  push('RSS idle, after the first requests, MB', memCells('idleMB'), goals.rssIdleMB);
  push(`RSS with ${meta.holdStreams} open streams, MB`, memCells('withStreamsMB'), goals.rssStreamsMB);
  push('RSS idle after the run, MB', memCells('afterLoadMB'));
  push(
    'main thread CPU idle after the run, ms per s',
    cols.map((r, i) => {
      if (i < 2) return '';
      const v = r?.memory?.idleCpuMsPerS;
      return typeof v === 'number' ? fmt(v, 1) : 'n/a';
    }),
  );
  const auditCells = (text: string): string[] =>
    COLUMNS.map((c) => (c.id === 'bridge' ? text : c.id === 'bridgePg' ? 'n/a' : ''));
  for (const a of audit) {
    push(
      `audit write with ${k(a.records)} stored, p50 / mean, ms`,
      auditCells(`${fmt(a.write.p50)} / ${fmt(a.write.mean)}`),
    );
  }
  for (const a of audit) {
    push(
      `store open with ${k(a.records)} stored, whole journal / from checkpoint, s`,
      auditCells(`${fmt(a.openMs / 1000, 2)} / ${fmt(a.checkpointOpenMs / 1000, 2)}`),
    );
    push(`every record read back with ${k(a.records)} stored, s`, auditCells(fmt(a.scanMs / 1000, 2)));
  }
  const ag = goals.auditRatio;
  push(
    `audit write ratio, ${k(audit.at(-1)?.records ?? 0)} / ${k(audit[0]?.records ?? 0)} (mean)`,
    auditCells(`${fmt(ag?.value, 2)}×`),
    ag,
    `≤ ${GOALS.auditRatio}×`,
  );
  // Only worth a row when the PostgreSQL column is empty: it says why.
  const pg = results.bridgePg;
  if (pg?.status !== 'measured')
    push(
      'postgres',
      COLUMNS.map((c) => (c.id === 'bridgePg' ? (pg?.status ?? 'n/a') : '')),
    );

  const header = ['', ...COLUMNS.map((c) => c.title), 'goal', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  const notes = [
    'Latency: "direct" is absolute; every other column is what that path adds over direct (same phase, same percentile).',
    '"bare proxy" is a 40-line node:http + undici pass-through: the least any Node proxy adds on this machine.',
    `Samples per path: ${meta.rates.map((r) => `${direct.json[`rate${r}`]?.n ?? 0} at ${r} rps`).join(', ')}; ` +
      `${direct.stream?.n ?? 0} streams of ${direct.stream?.eventsPerStream ?? 0} events. ` +
      `CPU steal during the run: ${meta.stealPercent.toFixed(1)}%.`,
    `The bridge wrote ${meta.auditRecordsWritten} audit records. postgres: ${pg?.status ?? 'n/a'}.`,
  ];
  for (const c of COLUMNS) {
    const r = results[c.id];
    if (c.id !== 'bridgePg' && r && r.status !== 'measured') notes.push(`${r.label}: ${r.status}.`);
  }
  return [meta.title, '', line(header), sep, ...rows.map(line), '', ...notes].join('\n');
}

/** results.json holds objects, strings and numbers only (no arrays), so its formatting is stable. */
export function forJson<T>(v: T): T {
  if (typeof v === 'number') return round(v) as T;
  if (Array.isArray(v)) return v.join(', ') as T;
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([key, x]) => [key, forJson(x)])) as T;
  }
  return v;
}

/** One of issue 21's targets, judged on one run's figures. */
export interface IssueTarget {
  text: string;
  value: number | null;
  limit: string;
  met: boolean | null;
}

/**
 * Issue 21's targets (docs/performance.md, "Organisation scale"), each judged side by side in
 * this run: the bridge (embedded store, audit on) against the bare proxy and Portkey, and the
 * PostgreSQL store against the embedded one.
 */
export function judgeTargets(results: Record<string, PathResult>): IssueTarget[] {
  const bridge = results.bridge as PathResult;
  const floor = results.floor;
  const portkey = results.portkey;
  const pg = results.bridgePg;
  const cpu = (r: PathResult | undefined): number | undefined =>
    measured(r) ? (r.saturation?.cpuMsPerKRequests ?? undefined) : undefined;
  const cpuAt = (r: PathResult | undefined, rate: number): number | undefined =>
    measured(r) ? (r.json[`rate${rate}`]?.cpuMsPerKRequests ?? undefined) : undefined;
  const rps = (r: PathResult | undefined): number | undefined =>
    measured(r) ? r.saturation?.achievedRps : undefined;
  const wide = (r: PathResult | undefined): number | undefined =>
    measured(r) ? r.saturationWide?.achievedRps : undefined;
  const ceiling = (r: PathResult | undefined): number | undefined => {
    const seen = [rps(r), wide(r)].filter((v): v is number => v !== undefined);
    return seen.length === 0 ? undefined : Math.max(...seen);
  };
  const connections = (r: PathResult): string => String(r.saturation?.connections ?? 16);
  const ratio = (a: number | undefined, b: number | undefined): number | null =>
    a === undefined || b === undefined || b === 0 ? null : a / b;
  const diff = (a: number | undefined, b: number | undefined): number | null =>
    a === undefined || b === undefined ? null : a - b;
  const at = (r: PathResult | undefined, rate: number, q: 'p50' | 'p99'): number | undefined =>
    measured(r) ? r.json[`rate${rate}`]?.[q] : undefined;
  const t = (text: string, value: number | null, limit: number, atLeast = false, unit = ''): IssueTarget => ({
    text,
    value: value === null || !Number.isFinite(value) ? null : round(value),
    limit: `${atLeast ? '≥' : '≤'} ${limit}${unit}`,
    met: value === null || !Number.isFinite(value) ? null : atLeast ? value >= limit : value <= limit,
  });
  return [
    t('CPU per request, × the bare proxy’s', ratio(cpu(bridge), cpu(floor)), 1.5, false, '×'),
    // Saturation puts each path at its own rate (the bare proxy's nearly twice the bridge's), with
    // more requests handled per wakeup the faster it goes; this is both at one rate.
    t(
      `… at ${SAME_LOAD_RPS} rps, the same load for both, ×`,
      ratio(cpuAt(bridge, SAME_LOAD_RPS), cpuAt(floor, SAME_LOAD_RPS)),
      1.5,
      false,
      '×',
    ),
    t('ceiling, × the bare proxy’s', ratio(rps(bridge), rps(floor)), 0.6, true, '×'),
    t('ceiling, × Portkey’s', ratio(rps(bridge), rps(portkey)), 4, true, '×'),
    t('p50 at 500 rps, ms over the bare proxy’s', diff(at(bridge, 500, 'p50'), at(floor, 500, 'p50')), 0.3),
    t('p99 at 500 rps, ms over the bare proxy’s', diff(at(bridge, 500, 'p99'), at(floor, 500, 'p99')), 2),
    t('idle RSS, MB', Number(bridge.memory?.idleMB ?? Number.NaN), 100),
    t(
      'RSS with 1,000 open streams (200 with --quick), MB',
      Number(bridge.memory?.withStreamsMB ?? Number.NaN),
      300,
    ),
    // A ceiling is the most a path serves: of the two concurrencies, whichever served more.
    t('PostgreSQL ceiling, × the embedded store’s', ratio(ceiling(pg), ceiling(bridge)), 0.8, true, '×'),
    t(
      `… at ${connections(bridge)} connections (each waits for its commit), ×`,
      ratio(rps(pg), rps(bridge)),
      0.8,
      true,
      '×',
    ),
    t(
      `… at ${bridge.saturationWide?.connections ?? 'more'} connections, ×`,
      ratio(wide(pg), wide(bridge)),
      0.8,
      true,
      '×',
    ),
    // The same with both stores acking as the embedded one does: with AIBRIDGE_AUDIT_ACK=stored each
    // of the 16 connections waits for its record's commit, so that ceiling is the commit's latency.
    t(
      '… both acking `sent` (PostgreSQL’s default is `stored`), ×',
      ratio(rps(results.bridgePgSent), rps(bridge)),
      0.8,
      true,
      '×',
    ),
    t(
      'PostgreSQL p99 at 200 rps, ms over the embedded store’s',
      diff(at(pg, 200, 'p99'), at(bridge, 200, 'p99')),
      5,
    ),
    // The same with both stores acking as the embedded one does (answers end without waiting for
    // the commit): what is left of the gap once the commit's own latency is taken out.
    t(
      '… both acking `sent` (PostgreSQL’s default is `stored`), ms',
      diff(at(results.bridgePgSent, 200, 'p99'), at(bridge, 200, 'p99')),
      5,
    ),
  ];
}

export function renderTargets(targets: IssueTarget[]): string {
  const rows = targets.map((g) => [
    g.text,
    g.value === null ? 'n/a' : fmt(g.value, 2),
    g.limit,
    g.met === null ? 'n/a' : g.met ? 'met' : '**missed**',
  ]);
  const header = ['issue 21 target', 'this run', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}
