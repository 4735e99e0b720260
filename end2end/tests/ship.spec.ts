import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectAs, openConsole, panel, publish, RELEASE_BINARY, rowsOfType, startHub, stopHub, unique } from './helpers';

test('the release binary alone, in an empty directory, serves a working console', async ({ page }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidings-alone-'));
  const binary = path.join(dir, 'tidings');
  copyFileSync(RELEASE_BINARY, binary);
  const port = 3222;
  const base = `http://127.0.0.1:${port}`;
  const hub = await startHub(port, ['--tick-interval', '0'], { binary, cwd: dir });
  try {
    await openConsole(page, `${base}/`);
    const user = unique('solo');
    const p = panel(page, 1);
    await connectAs(p, user);
    await publish(page, base, { to: user, data: 'from a lone binary' });
    await expect(p.getByRole('cell', { name: 'from a lone binary' })).toBeVisible();

    // Assets: right type, precompressed when accepted, ETag revalidation.
    const wasm = await page.request.get(`${base}/pkg/tidings.wasm`, { headers: { 'Accept-Encoding': 'br' } });
    expect(wasm.status()).toBe(200);
    expect(wasm.headers()['content-type']).toBe('application/wasm');
    expect(wasm.headers()['content-encoding']).toBe('br');
    const etag = wasm.headers()['etag'];
    expect(etag).toBeTruthy();
    const again = await page.request.get(`${base}/pkg/tidings.wasm`, {
      headers: { 'Accept-Encoding': 'br', 'If-None-Match': etag },
    });
    expect(again.status()).toBe(304);
    const css = await page.request.get(`${base}/pkg/tidings.css`, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(css.headers()['content-type']).toContain('text/css');
    expect(css.headers()['content-encoding']).toBe('gzip');
    const js = await page.request.get(`${base}/pkg/tidings.js`, { headers: { 'Accept-Encoding': 'identity' } });
    expect(js.headers()['content-type']).toContain('javascript');
    expect(js.headers()['content-encoding']).toBeUndefined();
  } finally {
    await stopHub(hub);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('over HTTPS with HTTP/2, eight panels stream at once', async ({ browser }) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidings-tls-'));
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  const port = 3223;
  const base = `https://127.0.0.1:${port}`;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  const hub = await startHub(port, ['--tick-interval', '0', '--tls-cert', cert, '--tls-key', key], { scheme: 'https' });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  try {
    await openConsole(page, `${base}/`);
    for (let i = 0; i < 5; i++) await page.getByRole('button', { name: 'Add panel' }).click();
    await expect(page.getByRole('region', { name: /^Panel \d+$/ })).toHaveCount(8);
    await page.getByRole('button', { name: 'Connect all' }).click();
    for (let n = 1; n <= 8; n++) await expect(rowsOfType(panel(page, n), 'open')).toHaveCount(1);
    // Every one of the eight streams delivers, the eighth included.
    const eighth = await panel(page, 8).getByLabel('User').inputValue();
    await publish(page, base, { to: '*', data: 'to all eight' });
    for (let n = 1; n <= 8; n++) await expect(panel(page, n).getByRole('cell', { name: 'to all eight' })).toBeVisible();
    await publish(page, base, { to: eighth, data: 'to the eighth' });
    await expect(panel(page, 8).getByRole('cell', { name: 'to the eighth' })).toBeVisible();
    const protocol = await page.evaluate(
      () => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol,
    );
    expect(protocol).toBe('h2');
    await expect(page.getByText('More than six streams')).toHaveCount(0);
  } finally {
    await context.close();
    await stopHub(hub);
    rmSync(dir, { recursive: true, force: true });
  }
});
