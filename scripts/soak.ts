// `npm run soak`: a bounded endurance run (default 100k requests) printing memory, heap, file
// descriptors and sockets over time; exits 1 if they grow more than 10 % after warm-up.
// `npm run soak -- --hostile`: the hostile soak (docs/security.md#hostile-soak); exits 1 if the
// normal members' p99 grows past max(2x, +SOAK_P99_FLOOR_MS) or anything is refused to them.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hostileSoak, hostileSoakProblems } from '../test/helpers/hostile-soak';
import { soak } from '../test/helpers/soak-driver';

if (process.argv.includes('--hostile')) {
  const phaseMs = Number(process.env.SOAK_PHASE_SECONDS ?? 60) * 1000;
  const floorMs = Number(process.env.SOAK_P99_FLOOR_MS ?? 50);
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'aibridge-hostile-soak-'));
  console.log(`hostile soak: two phases of ${phaseMs / 1000} s, data dir ${dataDir}`);
  const result = await hostileSoak({
    phaseMs,
    normalUsers: 8,
    hostileUsers: 5,
    dataDir,
    websockets: 500,
    slowSockets: 200,
    maxHostileRequests: 200,
    requestTimeoutMs: 30_000,
    log: (line) => console.log(line.length > 400 ? `${line.slice(0, 400)}…` : line),
  });
  const problems = hostileSoakProblems(result, floorMs);
  for (const p of problems) console.error(`hostile soak: ${p}`);
  process.exit(problems.length > 0 ? 1 : 0);
}

const requests = Number(process.env.SOAK_REQUESTS ?? 100_000);
const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'aibridge-soak-'));
console.log(`soak: ${requests} requests, data dir ${dataDir}`);
console.log('requests\trss MB\theap MB\tfds\tsockets');
const { samples, statuses } = await soak({
  requests,
  concurrency: 32,
  sampleEvery: Math.max(1000, Math.floor(requests / 20)),
  dataDir,
  log: (s) => console.log(`${s.requests}\t${s.rssMb}\t${s.heapMb}\t${s.fds}\t${s.sockets}`),
});
console.log('statuses', statuses);
const warm = samples[Math.min(2, samples.length - 1)]!;
const last = samples.at(-1)!;
const growth = (a: number, b: number): number => (b - a) / a;
const report = {
  rss: growth(warm.rssMb, last.rssMb),
  heap: growth(warm.heapMb, last.heapMb),
  fds: growth(warm.fds, last.fds),
};
console.log('growth after warm-up', report);
const bad = Object.entries(report).filter(([, g]) => g > 0.1);
if (bad.length > 0) {
  console.error(`soak: grew more than 10 %: ${bad.map(([k]) => k).join(', ')}`);
  process.exit(1);
}
