import fs from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The parts of a V8 `.cpuprofile` (written by `node --cpu-prof`) that the summary reads. */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

type Mapper = (line: number, column: number) => { file: string; line: number } | null;

/** Maps a position in a bundle file to its source file and line, through that file's source map. */
function sourceMapper(bundleFile: string): Mapper {
  let map: SourceMap;
  try {
    map = new SourceMap(JSON.parse(fs.readFileSync(`${bundleFile}.map`, 'utf8')) as SourceMapPayload);
  } catch {
    return () => null;
  }
  return (line, column) => {
    const e = map.findEntry(line, column) as { originalSource?: string; originalLine?: number };
    if (!e.originalSource) return null;
    return { file: e.originalSource.replace(/^(\.\.\/)+/, ''), line: (e.originalLine ?? 0) + 1 };
  };
}

/**
 * The bundle is dist/aibridge.cjs and the ES module chunks it loads (dist/server/*.mjs), each with
 * its own source map: one mapper per file a profile names, made on first use.
 */
function bundleMappers(): (url: string) => Mapper | null {
  const mappers = new Map<string, Mapper>();
  return (url) => {
    if (!/\.(c|m)?js$/.test(url)) return null;
    const file = url.startsWith('file://') ? fileURLToPath(url) : url;
    let m = mappers.get(file);
    if (!m) {
      m = sourceMapper(file);
      mappers.set(file, m);
    }
    return m;
  };
}

/** `node_modules/fastify/lib/x.js` → `fastify`; `server/proxy/forward.ts` → `server/proxy`. */
function packageOf(module: string): string {
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(module);
  if (nm?.[1]) return nm[1];
  const own = /^(server|shared)\/([^/]+)\//.exec(module);
  if (own) return `${own[1]}/${own[2]}`;
  return module;
}

function ms(x: number): string {
  return `${(x / 1000).toFixed(0).padStart(7)} ms`;
}

function pct(x: number, total: number): string {
  return `${((100 * x) / total).toFixed(1).padStart(5)}%`;
}

/**
 * A text summary of a CPU profile of the bridge: self time by function and by package, and the
 * inclusive time of the bridge's own functions (what each step of the hot path costs in total).
 */
export function summarizeProfile(profileFile: string, top = 20): string {
  const prof = JSON.parse(fs.readFileSync(profileFile, 'utf8')) as CpuProfile;
  const mapperOf = bundleMappers();
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const frameKey = new Map<number, { fn: string; pkg: string; file: string }>();
  for (const n of prof.nodes) {
    const { functionName, url, lineNumber, columnNumber } = n.callFrame;
    let where = url;
    let line = lineNumber + 1;
    const toSource = mapperOf(url);
    if (toSource) {
      const src = toSource(lineNumber, columnNumber);
      if (src) {
        where = src.file;
        line = src.line;
      }
    } else if (url === '') where = '(native)';
    const fn = `${functionName || '(anonymous)'}  ${where.replace(/^.*node_modules\//, '')}:${line}`;
    const pkg = functionName.startsWith('(') && url === '' ? functionName : packageOf(where);
    frameKey.set(n.id, { fn: where.startsWith('(') ? functionName : fn, pkg, file: where });
  }

  const selfByFn = new Map<string, number>();
  const selfByPkg = new Map<string, number>();
  const inclusiveOwn = new Map<string, number>();
  // Each sample charged to the nearest of the bridge's own source files up its stack: what a module
  // costs with the Node, undici and native work it calls (a socket write charged to whoever wrote).
  const nearestOwn = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i] ?? 0;
    const dt = prof.timeDeltas[i] ?? 0;
    const key = frameKey.get(id);
    if (!key) continue;
    if (key.pkg === '(idle)') {
      idle += dt;
      continue;
    }
    total += dt;
    selfByFn.set(key.fn, (selfByFn.get(key.fn) ?? 0) + dt);
    selfByPkg.set(key.pkg, (selfByPkg.get(key.pkg) ?? 0) + dt);
    const seen = new Set<string>();
    let near: string | undefined;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = frameKey.get(cur);
      if (!k || !(k.pkg.startsWith('server/') || k.pkg.startsWith('shared/'))) continue;
      near ??= k.file;
      if (seen.has(k.fn)) continue;
      seen.add(k.fn);
      inclusiveOwn.set(k.fn, (inclusiveOwn.get(k.fn) ?? 0) + dt);
    }
    const charged = near ?? (key.pkg.startsWith('(') ? key.pkg : `outside the bridge's code: ${key.pkg}`);
    nearestOwn.set(charged, (nearestOwn.get(charged) ?? 0) + dt);
  }
  const rows = (m: Map<string, number>, n: number): string[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `  ${ms(v)} ${pct(v, total)}  ${k}`);
  return [
    `CPU profile ${profileFile}: ${(total / 1e6).toFixed(2)} s busy, ${(idle / 1e6).toFixed(2)} s idle`,
    '',
    'Self time by package:',
    ...rows(selfByPkg, 15),
    '',
    'Self time by function:',
    ...rows(selfByFn, top),
    '',
    'Inclusive time of the bridge’s own functions:',
    ...rows(inclusiveOwn, top),
    '',
    'Time charged to the nearest of the bridge’s own files up the stack:',
    ...rows(nearestOwn, top),
  ].join('\n');
}
