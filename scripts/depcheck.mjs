// Checks .dependency-cruiser.cjs over the source (`npm run depcheck`, part of `npm run lint`).
// dependency-cruiser's CLI refuses Node 20, which the bridge still supports; its API runs on it, so
// the check goes through the API and the same rule file works on every Node the bridge runs on.
import { cruise } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const ROOTS = ['server', 'shared', 'extension', 'admin'];

const options = await extractDepcruiseOptions('./.dependency-cruiser.cjs');
const result = await cruise(ROOTS, { ...options, validate: true, outputType: 'err-long' }, undefined, {
  tsConfig: extractTSConfig(options.tsConfig.fileName),
});
process.stdout.write(result.output);
process.exitCode = result.exitCode;
