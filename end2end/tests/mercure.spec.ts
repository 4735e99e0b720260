import { expect, test, type Locator, type Page, type Request } from '@playwright/test';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import path from 'node:path';
import { openConsole, panel, RELEASE_BINARY, rowsOfType, stopHub } from './helpers';

// The Mercure protocol end to end: Symfony's publisher (Debian's php-symfony-mercure, run by
// end2end/mercure/publish.php) posts to a hub of this spec's own, which Chromium's EventSource
// (by hand, or through the console's Mercure panels) subscribes to; the JWT `mercure` claims say
// who may publish and who gets private updates.

const PORT = 3211;
const HUB = `http://127.0.0.1:${PORT}`;
const MERCURE = `${HUB}/.well-known/mercure`;
const ROOT = path.resolve(__dirname, '..', '..');
const PUBLISH_PHP = path.join('end2end', 'mercure', 'publish.php');
// Two keys, so a hub that checked a token with the wrong one fails here.
const PUBLISHER_KEY = 'e2e-mercure-publisher-key-of-32-bytes';
const SUBSCRIBER_KEY = 'e2e-mercure-subscriber-key-of-32-bytes';
const BOOKS = 'https://example.com/books/{id}';
/** How long an update that must not come is waited for. */
const QUIET_MS = 1_500;

let hub: ChildProcess | undefined;
let hubOutput = '';

test.beforeAll(async () => {
  // From the project root, as playwright.config.ts runs the suite's hub; the ticker off, so no
  // event but the published ones reaches a stream.
  const child = spawn(RELEASE_BINARY, ['--addr', `127.0.0.1:${PORT}`, '--tick-interval', '0'], {
    cwd: ROOT,
    env: {
      ...process.env,
      MERCURE_PUBLISHER_JWT_KEY: PUBLISHER_KEY,
      MERCURE_SUBSCRIBER_JWT_KEY: SUBSCRIBER_KEY,
      MERCURE_EXTRA_DIRECTIVES: 'anonymous\ncors_origins *',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  hub = child;
  const keep = (chunk: Buffer) => {
    hubOutput = (hubOutput + chunk.toString()).slice(-8_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the hub exited (${child.exitCode ?? child.signalCode}):\n${hubOutput}`);
    }
    try {
      if ((await fetch(`${HUB}/healthz`)).status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`the hub on ${PORT} did not answer /healthz:\n${hubOutput}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});

test.afterAll(async () => {
  if (hub) await stopHub(hub);
});

/** A topic of its own for each test, so no test sees another's history. */
function book(): string {
  return `https://example.com/books/${Math.floor(Math.random() * 1e9)}`;
}

/** An HS256 JWT, signed here as an application would sign its subscribers' tokens. */
function jwt(claims: Record<string, unknown>, key = SUBSCRIBER_KEY): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${signed}.${createHmac('sha256', key).update(signed).digest('base64url')}`;
}

function subscriberToken(selectors: string[]): string {
  return jwt({ mercure: { subscribe: selectors } });
}

interface Publication {
  topics: string[];
  data?: string;
  private?: boolean;
  id?: string;
  type?: string;
  retry?: number;
  /** The `mercure.publish` selectors of the token publish.php signs; all topics (`*`) unless given. */
  publish?: string[];
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `php end2end/mercure/publish.php '<json>'` from the project root. */
function runPublisher(publication: Publication): Promise<Run> {
  const args = JSON.stringify({ hub: MERCURE, secret: PUBLISHER_KEY, ...publication });
  return new Promise((resolve) => {
    execFile('php', [PUBLISH_PHP, args], { cwd: ROOT, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
  });
}

/** Publishes through Symfony's publisher and returns the id the hub answered, as the script printed it. */
async function publish(publication: Publication): Promise<string> {
  const run = await runPublisher(publication);
  expect(run.code, `publish.php failed:\n${run.stdout}${run.stderr}\nhub:\n${hubOutput}`).toBe(0);
  expect(run.stdout.endsWith('\n'), run.stdout).toBe(true);
  const id = run.stdout.slice(0, -1);
  expect(id, 'the hub answered an empty id').not.toBe('');
  return id;
}

interface Received {
  type: string;
  data: string;
  lastEventId: string;
}

interface Stream {
  source: EventSource;
  received: Received[];
  errors: number;
}

declare global {
  interface Window {
    streams?: Record<string, Stream>;
  }
}

interface Subscription {
  topics: string[];
  /** A JWT for the `authorization` query parameter. */
  authorization?: string;
  lastEventID?: string;
  /** Event types listened for besides `message`. */
  types?: string[];
}

/**
 * Opens `new EventSource('/.well-known/mercure?topic=…')` in the page, as Mercure's documentation
 * builds the URL, records every event it gets under `name`, and waits for `open`.
 */
async function subscribe(page: Page, name: string, subscription: Subscription) {
  await page.evaluate(
    ({ name, subscription }) =>
      new Promise<void>((resolve, reject) => {
        const url = new URL('/.well-known/mercure', window.location.href);
        for (const topic of subscription.topics) url.searchParams.append('topic', topic);
        if (subscription.authorization) url.searchParams.append('authorization', subscription.authorization);
        if (subscription.lastEventID) url.searchParams.append('lastEventID', subscription.lastEventID);
        const source = new EventSource(url.toString());
        const stream: Stream = { source, received: [], errors: 0 };
        (window.streams ??= {})[name] = stream;
        const record = (event: Event) => {
          const m = event as MessageEvent<string>;
          stream.received.push({ type: m.type, data: m.data, lastEventId: m.lastEventId });
        };
        for (const type of ['message', ...(subscription.types ?? [])]) source.addEventListener(type, record);
        let opened = false;
        source.addEventListener('open', () => {
          opened = true;
          resolve();
        });
        source.addEventListener('error', () => {
          stream.errors += 1;
          if (!opened) {
            source.close();
            reject(new Error(`the subscription ${name} did not open: ${url}`));
          }
        });
      }),
    { name, subscription },
  );
}

function received(page: Page, name: string): Promise<Received[]> {
  return page.evaluate((name) => window.streams?.[name]?.received ?? [], name);
}

async function close(page: Page, name: string) {
  await page.evaluate((name) => window.streams?.[name]?.source.close(), name);
}

/** A page on the hub's origin, from which `/.well-known/mercure` is same-origin. */
async function onHub(page: Page) {
  const response = await page.goto(`${HUB}/healthz`);
  expect(response?.status()).toBe(200);
}

const message = (data: string, lastEventId: string): Received => ({ type: 'message', data, lastEventId });

test('a public update from the Symfony publisher reaches an anonymous EventSource, data and id intact', async ({ page }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'anonymous', { topics: [BOOKS] });

  // Lines, a blank one, leading spaces, and what form encoding and SSE framing must keep.
  const data = '{"title": "Dune",\n "author": "Frank Herbert"}\n\n  indented: a+b=c & 100% é ✓\nlast line';
  const id = await publish({ topics: [topic], data });

  await expect.poll(() => received(page, 'anonymous')).toEqual([message(data, id)]);
});

test('an update with its own id and type reaches the listener of that type, with that id', async ({ page }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'typed', { topics: [topic], types: ['book.updated'] });

  const given = `urn:uuid:${randomUUID()}`;
  const id = await publish({ topics: [topic], data: 'typed', id: given, type: 'book.updated', retry: 2_500 });
  expect(id).toBe(given);

  // Only the `book.updated` listener: a typed event is no `message`.
  await expect.poll(() => received(page, 'typed')).toEqual([{ type: 'book.updated', data: 'typed', lastEventId: given }]);
});

test('a private update reaches only a subscriber whose mercure.subscribe matches, its JWT in ?authorization=', async ({ page }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'anonymous', { topics: [BOOKS] });
  await subscribe(page, 'authorized', { topics: [BOOKS], authorization: subscriberToken([BOOKS]) });
  await subscribe(page, 'other', {
    topics: [BOOKS],
    authorization: subscriberToken(['https://example.com/authors/{id}']),
  });

  const secret = await publish({ topics: [topic], data: 'for subscribers only', private: true });
  await expect.poll(() => received(page, 'authorized')).toEqual([message('for subscribers only', secret)]);
  await page.waitForTimeout(QUIET_MS);
  expect(await received(page, 'anonymous')).toEqual([]);
  expect(await received(page, 'other')).toEqual([]);

  // A public update after it reaches everyone: the streams are live, and the private one was
  // not merely late.
  const after = await publish({ topics: [topic], data: 'for everyone' });
  for (const name of ['anonymous', 'other']) {
    await expect.poll(() => received(page, name)).toEqual([message('for everyone', after)]);
  }
  await expect
    .poll(() => received(page, 'authorized'))
    .toEqual([message('for subscribers only', secret), message('for everyone', after)]);
});

test('a private update reaches a subscriber whose JWT is in the mercureAuthorization cookie', async ({ page, browser }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'anonymous', { topics: [topic] });

  // Another context, so the anonymous page sends no cookie.
  const context = await browser.newContext();
  try {
    await context.addCookies([{ name: 'mercureAuthorization', value: subscriberToken([BOOKS]), url: HUB }]);
    const authorized = await context.newPage();
    await onHub(authorized);
    await subscribe(authorized, 'cookie', { topics: [topic] });

    const secret = await publish({ topics: [topic], data: 'cookie holders only', private: true });
    await expect.poll(() => received(authorized, 'cookie')).toEqual([message('cookie holders only', secret)]);
    await page.waitForTimeout(QUIET_MS);
    expect(await received(page, 'anonymous')).toEqual([]);

    const after = await publish({ topics: [topic], data: 'public again' });
    await expect.poll(() => received(page, 'anonymous')).toEqual([message('public again', after)]);
    await expect
      .poll(() => received(authorized, 'cookie'))
      .toEqual([message('cookie holders only', secret), message('public again', after)]);
  } finally {
    await context.close();
  }
});

test('a publisher whose mercure.publish does not match the topic is refused with 403, and nothing is delivered', async ({ page }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'anonymous', { topics: [topic] });

  const refused = await runPublisher({ topics: [topic], data: 'must not arrive', publish: ['https://example.com/other/{x}'] });
  const output = refused.stdout + refused.stderr;
  expect(refused.code, output).not.toBe(0);
  expect(output).toContain('403');
  await page.waitForTimeout(QUIET_MS);
  expect(await received(page, 'anonymous')).toEqual([]);

  // The same update with a matching selector goes through, and is the only one the stream gets.
  const id = await publish({ topics: [topic], data: 'allowed', publish: [BOOKS] });
  await expect.poll(() => received(page, 'anonymous')).toEqual([message('allowed', id)]);
});

test('a new EventSource with ?lastEventID= gets what came after that id, the second update first', async ({ page }) => {
  const topic = book();
  await onHub(page);
  await subscribe(page, 'first', { topics: [topic] });
  const one = await publish({ topics: [topic], data: 'one' });
  const two = await publish({ topics: [topic], data: 'two' });
  await expect.poll(() => received(page, 'first')).toEqual([message('one', one), message('two', two)]);
  await close(page, 'first');

  await subscribe(page, 'again', { topics: [topic], lastEventID: one });
  await expect.poll(async () => (await received(page, 'again'))[0]).toEqual(message('two', two));
  // The replay ends there and the stream goes on live: no update twice, none before `two`.
  const three = await publish({ topics: [topic], data: 'three' });
  await expect.poll(() => received(page, 'again')).toEqual([message('two', two), message('three', three)]);
});

/** The rows of a console panel whose data cell is exactly `data`. */
function rowsWithData(p: Locator, data: string): Locator {
  return p.getByRole('row').filter({ has: p.page().getByRole('cell', { name: data, exact: true }) });
}

/** Sets a console panel to Mercure with these selectors and JWT, connects it, and returns the request it opened with. */
async function connectMercurePanel(page: Page, p: Locator, selectors: string, token: string, transport = 'eventsource'): Promise<Request> {
  await p.getByLabel('Protocol').selectOption('mercure');
  // Mercure has no users: the field is gone.
  await expect(p.getByLabel('User')).toHaveCount(0);
  await p.getByLabel('Topics', { exact: true }).fill(selectors);
  await p.getByLabel('Token', { exact: true }).fill(token);
  await p.getByLabel('Transport').selectOption(transport);
  const opened = page.waitForRequest((r) => r.url().startsWith(`${MERCURE}?`));
  await p.getByRole('button', { name: 'Connect' }).click();
  const request = await opened;
  await expect(rowsOfType(p, 'open')).toHaveCount(1);
  return request;
}

test('console: a Mercure panel shows public and private updates as rows; one whose token does not allow the topic, only the public', async ({ page }) => {
  const topic = book();
  await openConsole(page, `${HUB}/`);
  const [allowed, other, tidings] = [panel(page, 1), panel(page, 2), panel(page, 3)];
  const token = subscriberToken([BOOKS]);
  const opened = await connectMercurePanel(page, allowed, BOOKS, token);
  // One `topic=` a selector and the JWT as `authorization=`, as Mercure's documentation builds it.
  expect(opened.url()).toBe(`${MERCURE}?topic=${encodeURIComponent(BOOKS)}&authorization=${token}`);
  await connectMercurePanel(page, other, BOOKS, subscriberToken(['https://example.com/authors/{id}']));
  // Beside them a Tidings panel keeps its user.
  await expect(tidings.getByLabel('User')).toBeVisible();

  const secret = await publish({ topics: [topic], data: 'private, to the console', private: true });
  const open = await publish({ topics: [topic], data: 'public, to the console' });
  for (const [data, id] of [['private, to the console', secret], ['public, to the console', open]]) {
    await expect(rowsWithData(allowed, data).getByRole('cell')).toHaveText([/^\d+$/, id, 'message', data]);
  }
  await expect(rowsWithData(other, 'public, to the console').getByRole('cell')).toHaveText([
    /^\d+$/,
    open,
    'message',
    'public, to the console',
  ]);
  // A stream delivers in order and the public update came after the private one: the private one is not merely late.
  await expect(other.getByText('private, to the console')).toHaveCount(0);
  await expect(rowsOfType(other, 'error')).toHaveCount(0);

  // The console's own form publishes through Tidings' API; an event to the topic reaches both Mercure panels.
  const form = page.getByRole('form', { name: 'Publish an event' });
  await form.getByLabel('To', { exact: true }).fill('');
  await form.getByLabel('Topics', { exact: true }).fill(topic);
  await form.getByLabel('Data', { exact: true }).fill('from the form');
  await form.getByRole('button', { name: 'Publish' }).click();
  await expect(form.getByRole('status')).toContainText('to 2 connection');
  for (const p of [allowed, other]) await expect(rowsWithData(p, 'from the form')).toHaveCount(1);
});

test('console: a Mercure panel on fetch sends its JWT as a bearer, resumes with lastEventID=, and stops once the token expired', async ({ page }) => {
  const topic = book();
  await openConsole(page, `${HUB}/`);
  const p = panel(page, 1);
  await p.getByLabel('Add event name').fill('book.updated');
  await p.getByLabel('Add event name').press('Enter');
  // The hub ends the stream when `exp` (plus its 5 s leeway) passes; the panel's reconnection
  // then carries the last id and is refused.
  const token = jwt({ exp: Math.floor(Date.now() / 1000) + 2, mercure: { subscribe: [BOOKS] } });
  const opened = await connectMercurePanel(page, p, topic, token, 'fetch');
  expect(opened.url()).toBe(`${MERCURE}?topic=${encodeURIComponent(topic)}`);
  expect(await opened.headerValue('authorization')).toBe(`Bearer ${token}`);
  const reopened = page.waitForRequest((r) => r.url().startsWith(`${MERCURE}?`), { timeout: 20_000 });

  const id = await publish({ topics: [topic], data: 'typed and private', type: 'book.updated', private: true });
  await expect(rowsWithData(p, 'typed and private').getByRole('cell')).toHaveText([
    /^\d+$/,
    id,
    'book.updated',
    'typed and private',
  ]);
  expect((await reopened).url()).toBe(`${MERCURE}?topic=${encodeURIComponent(topic)}&lastEventID=${encodeURIComponent(id)}`);
  await expect(p.getByText('closed', { exact: true })).toBeVisible({ timeout: 10_000 });
  await expect(rowsOfType(p, 'error').last()).toContainText('the token has expired');
});
