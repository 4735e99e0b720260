import { expect, test } from '@playwright/test';
import { connectAs, openConsole, panel, publish, rowsOfType, startHub, stopHub, unique } from './helpers';

const PORT = 3219;
const BASE = `http://127.0.0.1:${PORT}`;

test('a hub restart shows an error row, then reconnects and replays what was missed, once', async ({ page }) => {
  let hub = await startHub(PORT, ['--tick-interval', '0']);
  try {
    await openConsole(page, `${BASE}/`);
    const user = unique('rita');
    const p = panel(page, 1);
    await connectAs(p, user);
    await publish(page, BASE, { to: user, data: 'before restart' });
    await expect(p.getByRole('cell', { name: 'before restart' })).toBeVisible();

    await stopHub(hub);
    await expect(rowsOfType(p, 'error').first()).toBeVisible();
    await expect(p.getByText(/reconnecting \(\d+\)/)).toBeVisible();
    hub = await startHub(PORT, ['--tick-interval', '0']);
    // Published while the panel is still waiting to reconnect (retry: 3 s).
    await publish(page, BASE, { to: user, data: 'missed while down' });

    await expect(rowsOfType(p, 'open')).toHaveCount(2, { timeout: 20_000 });
    await expect(p.getByRole('cell', { name: 'missed while down' })).toHaveCount(1);
    await expect(p.getByRole('cell', { name: 'before restart' })).toHaveCount(1);
    await expect(p.getByText(/open \(reconnected \d+×\)/)).toBeVisible();
    // The in-memory history did not survive, so the hub says so with a gap before the replay.
    await expect(rowsOfType(p, 'gap')).toHaveCount(1);
    // No event shows twice: every non-welcome message row has its own id.
    const rows = rowsOfType(p, 'message');
    const ids: string[] = [];
    for (let i = 0; i < (await rows.count()); i++) {
      const cells = rows.nth(i).getByRole('cell');
      if ((await cells.nth(3).textContent()) !== user) ids.push((await cells.nth(1).textContent()) ?? '');
    }
    expect(ids).toHaveLength(2);
    expect(new Set(ids).size).toBe(ids.length);
  } finally {
    await stopHub(hub);
  }
});
