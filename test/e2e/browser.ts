import { type Browser, chromium, type Page } from 'playwright-core';

/** Debian's Chromium (scripts/test-setup.sh installs it on a fresh machine). */
export const CHROMIUM = process.env.AIBRIDGE_E2E_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Headless Chromium with what this closed network needs: no background networking (its
 * connections are refused here, many at a time), no sandbox (tests run as root), no first run.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
    ],
  });
}

/** Collects CSP violations and page errors into `into`, so a test can assert there were none. */
export function watchViolations(page: Page, into: string[]): void {
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) into.push(m.text());
  });
  page.on('pageerror', (err) => into.push(`page error: ${err.message}`));
}
