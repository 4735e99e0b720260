import { expect, type Locator, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/** Opens the console and waits until it is hydrated, so clicks are not lost. */
export async function openConsole(page: Page, url = '/') {
  await page.goto(url);
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible();
}

export function panel(page: Page, n: number): Locator {
  return page.getByRole('region', { name: `Panel ${n}` });
}

/** The table rows of a panel whose type cell is exactly `type`. */
export function rowsOfType(p: Locator, type: string): Locator {
  return p.getByRole('row').filter({ has: p.page().getByRole('cell', { name: type, exact: true }) });
}

/** Connects a panel as `user` and waits for its stream to open. */
export async function connectAs(p: Locator, user: string) {
  await p.getByLabel('User').fill(user);
  await p.getByRole('button', { name: 'Connect' }).click();
  await expect(rowsOfType(p, 'open')).toHaveCount(1);
}

export function unique(prefix: string): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Publishes through the hub's API (not the form), for tests that need an event from outside. */
export async function publish(page: Page, base: string, body: unknown) {
  const response = await page.request.post(`${base}/api/events`, { data: body });
  expect(response.status(), await response.text()).toBe(202);
  return (await response.json()) as { id: string; connections: number };
}

const ROOT = path.resolve(__dirname, '..', '..');

export const RELEASE_BINARY = path.join(ROOT, 'target/release/tidings');

/** Starts a hub of our own (for tests that stop it) and waits until it answers. */
export async function startHub(
  port: number,
  args: string[] = [],
  options: { binary?: string; cwd?: string; scheme?: 'http' | 'https' } = {},
): Promise<ChildProcess> {
  const child = spawn(options.binary ?? RELEASE_BINARY, ['--addr', `127.0.0.1:${port}`, ...args], {
    cwd: options.cwd ?? ROOT,
    stdio: 'ignore',
  });
  const scheme = options.scheme ?? 'http';
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(`${scheme}://127.0.0.1:${port}/healthz`);
      if (r.ok) return child;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`hub on ${port} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops a hub we started, by its PID, and waits for it to exit. */
export async function stopHub(child: ChildProcess) {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
