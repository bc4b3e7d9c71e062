import { setFlagsFromString } from 'node:v8';

/**
 * V8 grows its young generation (to 16 MB here) when many objects survive a scavenge, and start-up
 * is one long burst of objects that live for good: modules, routes, compiled schemas. A bridge at
 * rest then holds a young generation sized for a load it has not seen. The launcher
 * (dist/aibridge.cjs, see scripts/build.mjs) sets V8's growth factor to 1 before loading the
 * server; this restores V8's default (2) once the bridge is up, so serving grows the young
 * generation as much as its load needs (docs/performance.md, idle RSS). V8 reads the factor each
 * time it grows the space.
 */
export function startUpDone(): void {
  setFlagsFromString('--semi-space-growth-factor=2');
}
