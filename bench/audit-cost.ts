/**
 * Audit write cost, in process: an EmbeddedStore whose journal already holds N records (written
 * straight to segment files in the journal's `<crc32 hex> <json>` line format, not appended one by
 * one), then timed `appendInterception` calls. bench/run.ts runs one worker per N and alternates
 * blocks of appends between them, so a slow moment of the disk hits both.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { EmbeddedStore } from '../server/store/embedded/embedded-store';
import type { NewInterception } from '../server/store/types';
import { serveCalls } from './lib/procs';

/** The journal's default segment size (server/store/embedded/journal.ts). */
const SEGMENT_BYTES = 64 * 1024 * 1024;
const USERS = 100;
const SPAN_MS = 30 * 24 * 3600 * 1000;

/** A record like the bridge writes for one Messages call; run.ts passes one the bridge really wrote. */
const FALLBACK_TEMPLATE = {
  id: 'int_00000000-0000-0000-0000-000000000000',
  userId: 'usr_bench',
  userEmail: 'bench@bench.test',
  team: 'bench',
  keyId: 'key_bench',
  provider: 'anthropic',
  api: 'messages',
  model: 'claude-sonnet-4-5',
  client: 'unknown',
  sessionId: null,
  startedAt: '2025-01-01T00:00:00.000Z',
  endedAt: '2025-01-01T00:00:00.002Z',
  durationMs: 2,
  status: 'ok',
  httpStatus: 200,
  streamed: true,
  usage: { input: 1200, output: 1176, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
  prompt: 'Change it to return null instead, and explain why that is clearer.',
  toolCalls: [],
  error: null,
  upstreamRequestId: 'req_bench_stream',
} as const;

type Rec = Record<string, unknown>;

function variant(template: Rec, i: number, at: number): Rec {
  const u = i % USERS;
  return {
    ...template,
    id: `int_${i.toString(16).padStart(32, '0')}`,
    userId: `usr_bench${u}`,
    userEmail: `user${u}@bench.test`,
    keyId: `key_bench${u}`,
    startedAt: new Date(at).toISOString(),
    endedAt: new Date(at + 2).toISOString(),
  };
}

/** Writes `count` records as journal segments, as fast as the disk takes them. */
function writeJournal(dir: string, template: Rec, count: number): number {
  const jdir = path.join(dir, 'interceptions');
  fs.mkdirSync(jdir, { recursive: true, mode: 0o700 });
  const t0 = Date.now() - SPAN_MS;
  const step = SPAN_MS / Math.max(1, count);
  let segment = 1;
  let segSize = 0;
  let fd = -1;
  let parts: string[] = [];
  let partBytes = 0;
  let total = 0;
  const flush = (): void => {
    if (partBytes === 0) return;
    fs.writeSync(fd, parts.join(''));
    parts = [];
    partBytes = 0;
  };
  const open = (): void => {
    if (fd !== -1) {
      flush();
      fs.closeSync(fd);
    }
    fd = fs.openSync(path.join(jdir, `seg-${String(segment).padStart(6, '0')}.jsonl`), 'w', 0o600);
    segSize = 0;
  };
  open();
  for (let i = 1; i <= count; i++) {
    const json = JSON.stringify({ ...variant(template, i, t0 + i * step), seq: i });
    const sum = crc32(json).toString(16).padStart(8, '0');
    const line = `${sum} ${json}\n`;
    const bytes = Buffer.byteLength(line);
    if (segSize > 0 && segSize + bytes > SEGMENT_BYTES) {
      segment++;
      open();
    }
    parts.push(line);
    partBytes += bytes;
    segSize += bytes;
    total += bytes;
    if (partBytes > 8 * 1024 * 1024) flush();
  }
  flush();
  fs.closeSync(fd);
  return total;
}

let store: EmbeddedStore | undefined;
let template: Rec = { ...FALLBACK_TEMPLATE };
let appended = 0;

function fresh(): NewInterception {
  appended++;
  return variant(template, 10_000_000 + appended, Date.now()) as unknown as NewInterception;
}

function open(): EmbeddedStore {
  if (!store) throw new Error('prepare first');
  return store;
}

serveCalls(async (msg) => {
  switch (msg.kind) {
    case 'prepare': {
      const dir = String(msg.dir);
      if (typeof msg.template === 'object' && msg.template !== null) template = msg.template as Rec;
      delete template.seq;
      // Made first, as a bridge makes it: the store refuses a data dir that holds records but no
      // db.json (its users and keys would be lost).
      const blank = new EmbeddedStore({ dataDir: dir });
      await blank.open();
      await blank.close();
      const g0 = performance.now();
      const bytes = writeJournal(dir, template, Number(msg.records));
      const genMs = performance.now() - g0;
      store = new EmbeddedStore({ dataDir: dir });
      const o0 = performance.now();
      await store.open();
      const openMs = performance.now() - o0;
      // A clean close leaves a checkpoint; the next open reads it instead of the journal.
      await store.close();
      store = new EmbeddedStore({ dataDir: dir });
      const c0 = performance.now();
      await store.open();
      const checkpointOpenMs = performance.now() - c0;
      // Every record read back in order, as an export or a verify reads them.
      const s0 = performance.now();
      let scanned = 0;
      for await (const _ of store.scanInterceptions({})) scanned++;
      const scanMs = performance.now() - s0;
      if (scanned !== Number(msg.records))
        throw new Error(`scanned ${scanned} of ${String(msg.records)} records`);
      global.gc?.();
      const mem = process.memoryUsage();
      return {
        records: Number(msg.records),
        journalBytes: bytes,
        genMs,
        openMs,
        checkpointOpenMs,
        scanMs,
        rss: mem.rss,
        heapUsed: mem.heapUsed,
      };
    }
    case 'block': {
      // Sequential: each append waits for its own write + fsync, as a lone request's record does.
      const s = open();
      const total: number[] = [];
      const sync: number[] = [];
      for (let i = 0; i < Number(msg.count); i++) {
        const t0 = performance.now();
        const p = s.appendInterception(fresh());
        const t1 = performance.now();
        await p;
        total.push(performance.now() - t0);
        sync.push(t1 - t0);
      }
      return { total, sync };
    }
    case 'burst': {
      // Concurrent: many records in flight share fsyncs (group commit), as under load.
      const s = open();
      const n = Number(msg.count);
      const t0 = performance.now();
      await Promise.all(Array.from({ length: n }, () => s.appendInterception(fresh())));
      return { perRecordMs: (performance.now() - t0) / n };
    }
    case 'close': {
      await store?.close();
      store = undefined;
      return { rss: process.memoryUsage().rss };
    }
    default:
      throw new Error(`unknown job ${String(msg.kind)}`);
  }
});
