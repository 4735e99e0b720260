import { defineConfig } from '@playwright/test';

/** The release hub the suite drives; `make test` builds it first. */
export const PORT = 3210;
export const HUB = `http://127.0.0.1:${PORT}`;

/** Debian's Chromium, never a downloaded browser; flags for a closed network, as root. */
export const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  args: [
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};

export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  // One hub serves the suite and panels use fixed user names: run tests one at a time.
  workers: 1,
  fullyParallel: false,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    baseURL: HUB,
    launchOptions: CHROMIUM,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
  },
  webServer: {
    // From the project root, as a released binary runs: it finds target/site there.
    command: `target/release/tidings --addr 127.0.0.1:${PORT} --tick-interval 700ms`,
    cwd: '..',
    url: `${HUB}/healthz`,
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: 'ignore',
    stderr: 'ignore',
  },
});
