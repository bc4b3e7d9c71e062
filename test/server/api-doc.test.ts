import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Interception, ToolCallRecord } from '../../shared/interception';

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
