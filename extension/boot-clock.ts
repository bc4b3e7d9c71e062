/** When the bundle started evaluating: imported first by extension.ts, so it runs before any other module. */
export const bootTime = performance.now();
