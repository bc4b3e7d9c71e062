import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Interception, ToolCallRecord } from '../../shared/interception';
import type {
  AlertEvent,
  BridgeEventType,
  BudgetAlertEvent,
  CacheBreakEvent,
  GatewayToolCallEvent,
  HelloEvent,
  InterceptionEndedEvent,
  InterceptionProgressEvent,
  InterceptionRef,
  InterceptionStartedEvent,
  McpWarningEvent,
  ToolCallEvent,
  ToolPolicyEvent,
} from '../../shared/protocol';
import { type MockedBridge, startMockedBridge } from '../helpers/bridge';

/** Every field of a record (a Record, so a field added to `Interception` without listing it here fails to compile). */
const RECORD_FIELDS: Record<keyof Interception, true> = {
  id: true,
  seq: true,
  userId: true,
  userEmail: true,
  team: true,
  keyId: true,
  provider: true,
  api: true,
  model: true,
  alias: true,
  client: true,
  sessionId: true,
  startedAt: true,
  endedAt: true,
  durationMs: true,
  status: true,
  httpStatus: true,
  streamed: true,
  usage: true,
  costUsd: true,
  priceKnown: true,
  billedTo: true,
  costSource: true,
  usageEstimated: true,
  prompt: true,
  toolCalls: true,
  error: true,
  upstreamRequestId: true,
  responseId: true,
  responseItems: true,
  redactions: true,
  capture: true,
  toolResults: true,
  messages: true,
  output: true,
  cacheKey: true,
  cacheBreak: true,
  attempts: true,
  keyName: true,
  prevHash: true,
  hash: true,
};

const TOOL_CALL_FIELDS: Record<keyof ToolCallRecord, true> = {
  id: true,
  name: true,
  server: true,
  input: true,
  injected: true,
  at: true,
  result: true,
  execution: true,
  policy: true,
};

/** The rows of the table under a docs/api.md heading: first cell's backticked names → the row. */
function table(doc: string, heading: string): Map<string, string> {
  const section = doc.slice(doc.indexOf(`\n## ${heading}\n`));
  const rows = new Map<string, string>();
  for (const line of section.slice(1, section.indexOf('\n#', 1)).split('\n')) {
    const first = /^\|([^|]*)\|/.exec(line)?.[1];
    if (first) for (const m of first.matchAll(/`([A-Za-z]+)`/g)) rows.set(m[1]!, line);
  }
  return rows;
}

describe('docs/api.md', () => {
  const doc = fs.readFileSync('docs/api.md', 'utf8');

  it('the interception records table names every field of a record, and only those', () => {
    const rows = table(doc, 'Interception records');
    assert.deepEqual([...rows.keys()].sort(), Object.keys(RECORD_FIELDS).sort());
  });

  it('the toolCalls row names every field of a tool call', () => {
    const row = table(doc, 'Interception records').get('toolCalls') ?? '';
    const shape = /`\[\{([^}]*)\}\]`/.exec(row)?.[1] ?? '';
    assert.deepEqual(
      shape
        .split(',')
        .map((f) => f.trim().replace(/\?$/, ''))
        .sort(),
      Object.keys(TOOL_CALL_FIELDS).sort(),
    );
  });
});

type More<E> = Record<Exclude<keyof E, 'type' | keyof InterceptionRef>, true>;

const REF_FIELDS: Record<keyof InterceptionRef, true> = {
  interceptionId: true,
  userId: true,
  userEmail: true,
  team: true,
  provider: true,
  api: true,
  model: true,
  client: true,
  sessionId: true,
};

/** Each live event's fields beyond `type` (and, for an interception's, beyond InterceptionRef). */
const EVENT_FIELDS: Record<BridgeEventType | 'tool.call/gateway', Record<string, true>> = {
  hello: {
    protocolVersion: true,
    user: true,
    serverTime: true,
    heartbeatMs: true,
  } satisfies More<HelloEvent>,
  'interception.started': { at: true } satisfies More<InterceptionStartedEvent>,
  'interception.progress': { at: true, usage: true } satisfies More<InterceptionProgressEvent>,
  'tool.call': {
    at: true,
    callId: true,
    name: true,
    server: true,
    injected: true,
    inputPreview: true,
    via: true,
  } satisfies More<ToolCallEvent>,
  'tool.call/gateway': {
    at: true,
    callId: true,
    kind: true,
    name: true,
    server: true,
    injected: true,
    inputPreview: true,
    userId: true,
    userEmail: true,
    team: true,
    client: true,
    sessionId: true,
    outcome: true,
    durationMs: true,
  } satisfies Record<Exclude<keyof GatewayToolCallEvent, 'type' | 'via'>, true>,
  'tool.policy': {
    at: true,
    callId: true,
    tool: true,
    rule: true,
    action: true,
    summary: true,
  } satisfies More<ToolPolicyEvent>,
  'interception.ended': {
    at: true,
    usage: true,
    costUsd: true,
    priceKnown: true,
    status: true,
    durationMs: true,
    billedTo: true,
  } satisfies More<InterceptionEndedEvent>,
  'cache.break': {
    at: true,
    cause: true,
    excessUsd: true,
    tokens: true,
    previousInterceptionId: true,
  } satisfies More<CacheBreakEvent>,
  'budget.alert': { alert: true } satisfies More<BudgetAlertEvent>,
  alert: { alert: true } satisfies More<AlertEvent>,
  'mcp.warning': { at: true, server: true, message: true } satisfies More<McpWarningEvent>,
};

describe("docs/api.md's live events", () => {
  const doc = fs.readFileSync('docs/api.md', 'utf8');
  const section = doc.slice(doc.indexOf('\n## Live events\n'));

  it('says which fields every interception event carries', () => {
    const line = /Every interception event carries\s+`([^`]*)`/.exec(section)?.[1] ?? '';
    assert.deepEqual(
      line
        .split(',')
        .map((f) => f.trim())
        .sort(),
      Object.keys(REF_FIELDS).sort(),
    );
  });

  it('lists every event type with the fields shared/protocol.ts gives it', () => {
    const rows = new Map<string, string[]>();
    for (const line of section.split('\n')) {
      const row = /^\| `([a-z.]+)`( \(`via: "gateway"`\))? +\|[^|]*\|(.*)\|$/.exec(line);
      if (!row) continue;
      // Parentheses hold values and links, not fields: `via` (`client`, `injected`).
      const cell = row[3]!.replace(/\((?:[^()]|\([^()]*\))*\)/g, '');
      const fields = [...cell.matchAll(/`([^`]*)`/g)].flatMap((m) =>
        m[1]!
          .replace(/\{[^}]*\}/g, '')
          .split(',')
          .map((f) => /^\s*([A-Za-z]+)/.exec(f)?.[1] ?? ''),
      );
      rows.set(row[1]! + (row[2] ? '/gateway' : ''), fields.filter(Boolean).sort());
    }
    const want = new Map(Object.entries(EVENT_FIELDS).map(([t, f]) => [t, Object.keys(f).sort()]));
    assert.deepEqual(Object.fromEntries(rows), Object.fromEntries(want));
  });
});

describe('the routes the bridge serves', () => {
  let m: MockedBridge;
  before(async () => {
    m = await startMockedBridge({
      AIBRIDGE_SCIM_TOKEN: 'scim-token-for-the-route-list-0123456789abcdef',
      AIBRIDGE_GEMINI_API_KEY: 'gemini-upstream-key',
    });
  });
  after(() => m.close());

  it('are each named in docs/, with their method', () => {
    const paragraphs = [
      'README.md',
      ...fs
        .readdirSync('docs')
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ].flatMap((f) => fs.readFileSync(f, 'utf8').split(/\n\s*\n/));
    // Provider prefixes are documented by their APIs (docs/api.md, providers.md), not as catch-alls.
    const prefix = /^\/(anthropic|openai\/v1|gemini)(\/\*)?$/;
    const undocumented = new Set<string>();
    for (const r of m.tb.bridge.routes.routes) {
      if (r.method === 'HEAD' || r.method === 'OPTIONS' || prefix.test(r.url) || r.url === '/admin/')
        continue;
      const path = new RegExp(
        `(^|[\\s\`(/])${r.url.replace(/[.*]/g, '\\$&').replace(/:[a-zA-Z]+/g, ':[a-zA-Z]+')}(?![\\w/-])`,
      );
      if (!paragraphs.some((p) => path.test(p) && new RegExp(`\\b${r.method}\\b`).test(p)))
        undocumented.add(`${r.method} ${r.url}`);
    }
    assert.deepEqual([...undocumented], []);
  });
});
