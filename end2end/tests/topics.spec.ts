import { expect, test, type Locator, type Page } from '@playwright/test';
import { HUB } from '../playwright.config';
import { openConsole, panel, rowsOfType, unique } from './helpers';

/** Connects a panel as `user` (none when empty) with these Topics; returns the stream URL it opened. */
async function connectWithTopics(page: Page, p: Locator, user: string, topics: string): Promise<string> {
  await p.getByLabel('User').fill(user);
  await p.getByLabel('Topics', { exact: true }).fill(topics);
  const opened = page.waitForRequest((r) => r.url().includes('/stream-sse?'));
  await p.getByRole('button', { name: 'Connect' }).click();
  const url = (await opened).url();
  await expect(rowsOfType(p, 'open')).toHaveCount(1);
  return url;
}

test('a panel subscribed to a topic, exactly or by a template, gets what the form publishes to it', async ({ page }) => {
  await openConsole(page);
  const topics = page.getByRole('region', { name: 'Topics', exact: true });
  const form = page.getByRole('form', { name: 'Publish an event' });
  await expect(topics.getByText('No topic has a stream.')).toBeVisible();

  const order = `https://shop.example/orders/${Math.floor(Math.random() * 1e9)}`;
  const template = 'https://shop.example/orders/{id}';
  const [tia, uma] = [unique('tia'), unique('uma')];
  const [exact, templated, none] = [panel(page, 1), panel(page, 2), panel(page, 3)];

  // One `topic=` a selector, percent-encoded; no `user=` for a panel of topics alone, and no
  // `topic=` for a panel without topics.
  expect(await connectWithTopics(page, exact, tia, order)).toBe(
    `${HUB}/stream-sse?user=${encodeURIComponent(tia)}&topic=${encodeURIComponent(order)}`,
  );
  expect(await connectWithTopics(page, templated, '', `\n ${template}\n`)).toBe(
    `${HUB}/stream-sse?topic=${encodeURIComponent(template)}`,
  );
  expect(await connectWithTopics(page, none, uma, '')).toBe(`${HUB}/stream-sse?user=${encodeURIComponent(uma)}`);

  // The list shows exact topics with their streams; a template is not a topic.
  await expect(topics.getByText(`${order}: 1 stream`, { exact: true })).toBeVisible();
  await expect(topics.getByText(template)).toHaveCount(0);
  await expect(topics.getByText('No topic has a stream.')).toHaveCount(0);

  // To the topic alone: both subscribed panels, not the third.
  const shipped = `shipped ${order}`;
  await form.getByLabel('To', { exact: true }).fill('');
  await form.getByLabel('Topics', { exact: true }).fill(order);
  await form.getByLabel('Event', { exact: true }).fill('message');
  await form.getByLabel('Data', { exact: true }).fill(shipped);
  await form.getByRole('button', { name: 'Publish' }).click();
  await expect(form.getByRole('status')).toContainText('to 2 connection');
  await expect(exact.getByRole('cell', { name: shipped, exact: true })).toBeVisible();
  await expect(templated.getByRole('cell', { name: shipped, exact: true })).toBeVisible();
  await expect(none.getByText(shipped)).toHaveCount(0);

  // To a user and two topics (separated by whitespace): each panel once.
  const delivered = `delivered ${order}`;
  await form.getByLabel('To', { exact: true }).fill(uma);
  await form.getByLabel('Topics', { exact: true }).fill(`https://shop.example/elsewhere ${order}`);
  await form.getByLabel('Data', { exact: true }).fill(delivered);
  await form.getByRole('button', { name: 'Publish' }).click();
  await expect(form.getByRole('status')).toContainText('to 3 connection');
  for (const p of [exact, templated, none]) {
    await expect(p.getByRole('cell', { name: delivered, exact: true })).toHaveCount(1);
  }

  // Its only stream gone, the topic leaves the list.
  await exact.getByRole('button', { name: 'Disconnect' }).click();
  await expect(topics.getByText('No topic has a stream.')).toBeVisible();
  await expect(topics.getByText(order)).toHaveCount(0);
});
