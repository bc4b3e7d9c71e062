// Files named on the command line run alone (`npx mocha test/server/x.test.ts`); none: the whole suite.
const named = process.argv.slice(2).filter((a) => /\.test\.ts$/.test(a));
module.exports = {
  // expose-gc: memory tests measure what is retained, not garbage not yet collected.
  'node-option': ['import=tsx', 'expose-gc'],
  spec: named.length > 0 ? named : ['test/**/*.test.ts'],
  extension: ['ts'],
  // Root hooks: the temporary directories a run made are removed when it ends.
  require: ['test/helpers/root-hooks.ts'],
  timeout: 20000,
  reporter: 'spec',
  exit: true,
};
