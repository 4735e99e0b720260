import { expect, test } from '@playwright/test';
import { HUB } from '../playwright.config';
import { connectAs, openConsole, panel, publish, rowsOfType, unique } from './helpers';

const SEEDS = ['Alpha User', 'Beta User', 'Theta User'];

test('the server-rendered page hydrates and answers a click', async ({ page }) => {
  await openConsole(page);
  await expect(page.getByRole('region', { name: /^Panel \d+$/ })).toHaveCount(3);
  await page.getByRole('button', { name: 'Add panel' }).click();
  await expect(page.getByRole('region', { name: /^Panel \d+$/ })).toHaveCount(4);
  await page.getByRole('button', { name: 'Remove panel 4' }).click();
  await expect(page.getByRole('region', { name: /^Panel \d+$/ })).toHaveCount(3);
});

test('connect all: each panel opens and is welcomed by name; ticks arrive', async ({ page }, testInfo) => {
  await openConsole(page);
  for (const [i, seed] of SEEDS.entries()) {
    const p = panel(page, i + 1);
    await expect(p.getByLabel('User')).toHaveValue(seed);
    await expect(p.getByRole('table', { name: 'EventStream' })).toBeVisible();
    for (const header of ['No', 'lastEventId', 'type', 'data']) {
      await expect(p.getByRole('columnheader', { name: header, exact: true })).toBeVisible();
    }
  }
  await page.getByRole('button', { name: 'Connect all' }).click();
  for (const [i, seed] of SEEDS.entries()) {
    const p = panel(page, i + 1);
    await expect(rowsOfType(p, 'open')).toHaveCount(1);
    await expect(rowsOfType(p, 'message').filter({ hasText: seed }).first()).toBeVisible();
    await expect(p.getByRole('button', { name: 'Disconnect' })).toBeVisible();
    await expect(p.getByText('open', { exact: true }).first()).toBeVisible();
  }
  // The ticker picks a connected user every 700 ms: some panel gets {"time": ...} with an id.
  const tick = page.getByRole('row').filter({ hasText: '"time":' }).first();
  await expect(tick).toBeVisible({ timeout: 15_000 });
  await expect(tick.getByRole('cell').nth(1)).toHaveText(/^\d+-\d+$/);
  // The live list shows the three users.
  const users = page.getByRole('region', { name: 'Connected users' });
  for (const seed of SEEDS) await expect(users.getByText(`${seed}: 1 connection`)).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath('console-three-panels.png'), fullPage: true });
  await page.screenshot({ path: 'test-results/console.png', fullPage: true });
});

test('publishing to one user shows a row in that panel only, as text', async ({ page }) => {
  await openConsole(page);
  const [a, b] = [unique('ann'), unique('ben')];
  await panel(page, 1).getByLabel('User').fill(a);
  await panel(page, 2).getByLabel('User').fill(b);
  await panel(page, 1).getByRole('button', { name: 'Connect' }).click();
  await panel(page, 2).getByRole('button', { name: 'Connect' }).click();
  await expect(rowsOfType(panel(page, 1), 'open')).toHaveCount(1);
  await expect(rowsOfType(panel(page, 2), 'open')).toHaveCount(1);

  const markup = `<b>bold ${a}</b>`;
  await page.getByLabel('To', { exact: true }).fill(a);
  await page.getByLabel('Event', { exact: true }).fill('message');
  await page.getByLabel('Data', { exact: true }).fill(markup);
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Published' })).toContainText('1 connection');
  const cell = panel(page, 1).getByRole('cell', { name: markup, exact: true });
  await expect(cell).toBeVisible();
  await expect(cell.locator('b')).toHaveCount(0);
  await expect(panel(page, 2).getByText(markup)).toHaveCount(0);

  // JSON data is shown on one line, spaced.
  await page.getByLabel('Data', { exact: true }).fill('{"n":1,"list":[1,2]}');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(panel(page, 1).getByRole('cell', { name: '{"n": 1, "list": [1, 2]}', exact: true })).toBeVisible();

  // The hub's refusal is shown as it worded it.
  await page.getByLabel('To', { exact: true }).fill('');
  await page.getByRole('button', { name: 'Publish' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'at least one user' })).toBeVisible();
});

test('disconnect stops rows', async ({ page }) => {
  await openConsole(page);
  const user = unique('dora');
  const p = panel(page, 1);
  await connectAs(p, user);
  await publish(page, HUB, { to: user, data: 'while connected' });
  await expect(p.getByRole('cell', { name: 'while connected' })).toBeVisible();
  await p.getByRole('button', { name: 'Disconnect' }).click();
  await expect(p.getByRole('button', { name: 'Connect' })).toBeVisible();
  await expect(p.getByText('closed', { exact: true })).toBeVisible();
  const rows = await p.getByRole('row').count();
  const ack = await publish(page, HUB, { to: user, data: 'after disconnect' });
  expect(ack.connections).toBe(0);
  await page.waitForTimeout(1500);
  await expect(p.getByRole('row')).toHaveCount(rows);
  await expect(p.getByText('after disconnect')).toHaveCount(0);
});

test('a named event shows up once its name is added to the panel', async ({ page }) => {
  await openConsole(page);
  const user = unique('nia');
  const p = panel(page, 1);
  await connectAs(p, user);
  await publish(page, HUB, { to: user, event: 'order', data: 'unheard' });
  await p.getByLabel('Add event name').fill('order');
  await p.getByLabel('Add event name').press('Enter');
  await expect(p.getByText('order', { exact: true })).toBeVisible();
  await publish(page, HUB, { to: user, event: 'order', data: 'heard' });
  await expect(rowsOfType(p, 'order').filter({ hasText: 'heard' })).toHaveCount(1);
  await expect(p.getByText('unheard')).toHaveCount(0);
});

test('clear empties a table; more than six streams on HTTP/1.1 are called out', async ({ page }) => {
  await openConsole(page);
  const p = panel(page, 1);
  const user = unique('cleo');
  await connectAs(p, user);
  await expect(p.getByRole('cell', { name: user, exact: true })).toBeVisible(); // the welcome
  // The suite's hub ticks every 700 ms to a connected user: stop the stream so no row lands after the clear.
  await p.getByRole('button', { name: 'Disconnect' }).click();
  await expect(p.getByRole('button', { name: 'Connect' })).toBeVisible();
  await p.getByRole('button', { name: 'Clear' }).click();
  await expect(p.getByRole('row')).toHaveCount(1); // the header row
  await expect(page.getByText('More than six streams')).toHaveCount(0);
  for (let i = 0; i < 4; i++) await page.getByRole('button', { name: 'Add panel' }).click();
  await page.getByRole('button', { name: 'Connect all' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'More than six streams' })).toBeVisible();
});

test('on a narrow screen the panels stack', async ({ page }) => {
  await page.setViewportSize({ width: 420, height: 900 });
  await openConsole(page);
  const first = await panel(page, 1).boundingBox();
  const second = await panel(page, 2).boundingBox();
  expect(first && second).toBeTruthy();
  expect(second!.y).toBeGreaterThanOrEqual(first!.y + first!.height);
  expect(Math.abs(second!.x - first!.x)).toBeLessThan(2);
});

test('a table keeps its newest 500 rows', async ({ page }) => {
  await openConsole(page);
  const user = unique('many');
  const p = panel(page, 1);
  await connectAs(p, user);
  const batch = Array.from({ length: 520 }, (_, i) => ({ to: user, data: `row ${i}` }));
  const response = await page.request.post(`${HUB}/api/events`, { data: batch });
  expect(response.status()).toBe(202);
  await expect(p.getByRole('cell', { name: 'row 519', exact: true })).toBeVisible();
  await expect(p.getByRole('row')).toHaveCount(501); // 500 rows and the header
  await expect(p.getByRole('cell', { name: 'row 0', exact: true })).toHaveCount(0);
});
