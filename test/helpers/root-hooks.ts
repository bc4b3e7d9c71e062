import { removeTempDirs } from './temp-dirs';

/** Mocha root hooks (loaded by .mocharc.cjs): what every run does once, whichever files it runs. */
export const mochaHooks = {
  afterAll(): void {
    removeTempDirs();
  },
};
