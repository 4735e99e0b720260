import { expect, test, type Page } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { openConsole, panel, rowsOfType, startHub, stopHub, unique } from './helpers';

const PORT = 3221;
const BASE = `http://127.0.0.1:${PORT}`;
const SECRET = 'e2e-secret-of-thirty-two-bytes-x';
const BIN = path.resolve(__dirname, '..', '..', 'target/release/tidings');

/** A token from `tidings token`, as an operator would make one. */
function token(args: string[]): string {
  return execFileSync(BIN, ['token', ...args], { env: { ...process.env, TIDINGS_JWT_SECRET: SECRET } })
    .toString()
    .trim();
}

async function publishAs(page: Page, publisher: string, body: unknown) {
  const response = await page.request.post(`${BASE}/api/events`, {
    data: body,
    headers: { Authorization: `Bearer ${publisher}` },
  });
  expect(response.status(), await response.text()).toBe(202);
}

const TRANSPORTS = [
  { key: 'eventsource', name: 'a one-time ticket' },
  { key: 'eventsource-token', name: '?token=' },
  { key: 'fetch', name: 'fetch with Authorization' },
];

for (const transport of TRANSPORTS) {
  test(`with auth on, a panel streams its own events through ${transport.name}, across reconnects`, async ({ page }) => {
    // Streams end every 3 s, so each transport has to reconnect (with a fresh ticket, or
    // Last-Event-ID) while events are published.
    const hub = await startHub(PORT, ['--tick-interval', '0', '--jwt-secret', SECRET, '--stream-timeout', '3s']);
    try {
      const [amy, bob] = [unique('amy'), unique('bob')];
      const publisher = token(['--publish']);
      await openConsole(page, `${BASE}/`);
      await expect(page.getByLabel('Publisher token')).toBeVisible();
      await page.getByLabel('Publisher token').fill(publisher);
      for (const [n, user] of [[1, amy], [2, bob]] as const) {
        const p = panel(page, n);
        await p.getByLabel('User').fill(user);
        await p.getByLabel('Token', { exact: true }).fill(token(['--user', user]));
        await p.getByLabel('Transport').selectOption(transport.key);
        await p.getByRole('button', { name: 'Connect' }).click();
        await expect(rowsOfType(p, 'open')).toHaveCount(1);
        await expect(rowsOfType(p, 'message').filter({ hasText: user })).toHaveCount(1);
      }
      const [pa, pb] = [panel(page, 1), panel(page, 2)];
      await publishAs(page, publisher, { to: amy, data: `for ${amy}` });
      await publishAs(page, publisher, { to: bob, data: `for ${bob}` });
      await expect(pa.getByRole('cell', { name: `for ${amy}` })).toHaveCount(1);
      await expect(pb.getByRole('cell', { name: `for ${bob}` })).toHaveCount(1);
      await expect(pa.getByText(`for ${bob}`)).toHaveCount(0);

      // The stream times out; while the panel waits to reconnect, an event is published.
      await expect(rowsOfType(pa, 'error').first()).toBeVisible({ timeout: 10_000 });
      await publishAs(page, publisher, { to: amy, data: 'while reconnecting' });
      await expect(rowsOfType(pa, 'open')).toHaveCount(2, { timeout: 15_000 });
      await expect(pa.getByRole('cell', { name: 'while reconnecting' })).toHaveCount(1);
      await expect(pa.getByRole('cell', { name: `for ${amy}` })).toHaveCount(1);
      await expect(rowsOfType(pa, 'gap')).toHaveCount(0);

      // Publishing from the console uses the publisher token.
      await page.getByLabel('To', { exact: true }).fill(amy);
      await page.getByLabel('Data', { exact: true }).fill('from the form');
      await page.getByRole('button', { name: 'Publish' }).click();
      await expect(pa.getByRole('cell', { name: 'from the form' })).toHaveCount(1);
    } finally {
      await stopHub(hub);
    }
  });
}

test('with auth on, a ticket panel that has seen no event yet reconnects and gets what was published while it was away', async ({ page }) => {
  // The stream ends after 3 s, before any event: the panel's only resume point is the welcome,
  // which carries the cursor the hub sent before it.
  const hub = await startHub(PORT, ['--tick-interval', '0', '--jwt-secret', SECRET, '--stream-timeout', '3s']);
  try {
    const user = unique('quiet');
    const publisher = token(['--publish']);
    await openConsole(page, `${BASE}/`);
    const p = panel(page, 1);
    await p.getByLabel('User').fill(user);
    await p.getByLabel('Token', { exact: true }).fill(token(['--user', user]));
    await p.getByLabel('Transport').selectOption('eventsource');
    await p.getByRole('button', { name: 'Connect' }).click();
    await expect(rowsOfType(p, 'open')).toHaveCount(1);
    await expect(rowsOfType(p, 'message').filter({ hasText: user })).toHaveCount(1);

    // The stream times out; while the panel waits to buy a new ticket, an event is published.
    await expect(rowsOfType(p, 'error').first()).toBeVisible({ timeout: 10_000 });
    await publishAs(page, publisher, { to: user, data: 'while away' });
    await expect(rowsOfType(p, 'open')).toHaveCount(2, { timeout: 15_000 });
    await expect(p.getByRole('cell', { name: 'while away' })).toHaveCount(1);
    await expect(rowsOfType(p, 'gap')).toHaveCount(0);
  } finally {
    await stopHub(hub);
  }
});

test('with auth on, a wrong token is refused and the panel says so', async ({ page }) => {
  const hub = await startHub(PORT, ['--tick-interval', '0', '--jwt-secret', SECRET]);
  try {
    await openConsole(page, `${BASE}/`);
    const p = panel(page, 1);
    await p.getByLabel('Token', { exact: true }).fill('not-a-token');
    await p.getByLabel('Transport').selectOption('fetch');
    await p.getByRole('button', { name: 'Connect' }).click();
    await expect(rowsOfType(p, 'error').filter({ hasText: 'malformed' })).toBeVisible();
    await expect(p.getByRole('button', { name: 'Connect' })).toBeVisible();
  } finally {
    await stopHub(hub);
  }
});
