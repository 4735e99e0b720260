import { expect, test } from '@playwright/test';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { connectAs, openConsole, panel, rowsOfType, startHub, stopHub, unique } from './helpers';

const DIST = path.resolve(__dirname, '..', '..', 'dist');
const [PAGE_PORT, HUB_PORT] = [3224, 3225];

test('the Trunk build, served from another origin, drives a hub through ?hub= (CORS)', async ({ page }) => {
  const hub = await startHub(HUB_PORT, ['--tick-interval', '0']);
  const server = spawn('python3', ['-m', 'http.server', String(PAGE_PORT), '--bind', '127.0.0.1', '--directory', DIST], {
    stdio: 'ignore',
  });
  try {
    const pageUrl = `http://127.0.0.1:${PAGE_PORT}/?hub=http://127.0.0.1:${HUB_PORT}`;
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${PAGE_PORT}/`)).ok) break;
      } catch {
        if (i > 100) throw new Error('static server did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await openConsole(page, pageUrl);
    const user = unique('tess');
    const p = panel(page, 1);
    await connectAs(p, user);
    await expect(rowsOfType(p, 'message').filter({ hasText: user })).toHaveCount(1);
    await page.getByLabel('To', { exact: true }).fill(user);
    await page.getByLabel('Data', { exact: true }).fill('across origins');
    await page.getByRole('button', { name: 'Publish' }).click();
    await expect(p.getByRole('cell', { name: 'across origins' })).toBeVisible();
    await expect(page.getByRole('region', { name: 'Connected users' }).getByText(`${user}: 1 connection`)).toBeVisible();
  } finally {
    server.kill('SIGTERM');
    await stopHub(hub);
  }
});
