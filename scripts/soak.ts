// `npm run soak`: a bounded endurance run (default 100k requests) printing memory, heap, file
// descriptors and sockets over time; exits 1 if they grow more than 10 % after warm-up.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { soak } from '../test/helpers/soak-driver';

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
