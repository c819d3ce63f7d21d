// The dashboard in a real browser: Debian's Chromium, headless, driven by playwright-core.
//
//   node tests/e2e/dashboard.mjs URL QUEUE RETRY_ID DELETE_ID OUT_DIR
//
// Opens the overview (and sees it refresh in place), finds a task by id, opens a dead task
// and retries it, watches it succeed, deletes another dead task, pauses and resumes the queue.
// A screenshot of each page goes to OUT_DIR. Any console error (a script the CSP blocked, a
// failed request) fails the run. Exit 0 when every step held; otherwise the step that failed.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, queue, retryId, deleteId, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: dashboard.mjs URL QUEUE RETRY_ID DELETE_ID OUT_DIR');
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'asynctasq-chromium-'));
// A fresh profile each run (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const errors = [];
let step = 'start';
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${step}: console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`${step}: page error: ${e.message}`));

  const expectText = async (text) => {
    await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible' });
  };
  const shot = (name) => page.screenshot({ path: join(out, `${name}.png`), fullPage: true });

  step = 'overview';
  await page.goto(url + '/');
  await expectText(queue);
  // The queue table refreshes in place (htmx, under the strict CSP) without a reload.
  await page.waitForRequest((r) => r.url().endsWith('/fragments/queues'), { timeout: 5000 });
  await shot('overview');

  step = 'search by id';
  await page.getByRole('searchbox', { name: 'find a task by id' }).fill(deleteId);
  await page.getByRole('button', { name: 'Find' }).click();
  await page.waitForURL(`**/tasks/${deleteId}`);
  await expectText('dead');
  await shot('task-search');

  step = 'dead letters';
  await page.goto(`${url}/dead?queue=${queue}`);
  await expectText(retryId);
  await shot('dead');

  step = 'open the dead task';
  await page.getByRole('link', { name: retryId }).click();
  await page.waitForURL(`**/tasks/${retryId}`);
  await expectText('flaky');
  await shot('task-dead');

  step = 'retry';
  await page.getByRole('button', { name: 'Retry' }).click();
  await expectText('Task moved back to its queue');

  step = 'watch it succeed';
  const deadline = Date.now() + 20000;
  for (;;) {
    await page.goto(`${url}/tasks/${retryId}`);
    if (await page.locator('h1 .tag.succeeded').count() > 0) break;
    if (Date.now() > deadline) throw new Error('the retried task did not succeed within 20 s');
    await page.waitForTimeout(250);
  }
  await shot('task-succeeded');

  step = 'delete';
  await page.goto(`${url}/tasks/${deleteId}`);
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.waitForURL(`**/dead?queue=${queue}**`);
  await expectText('Task deleted.');
  if (await page.getByRole('link', { name: deleteId }).count() !== 0) throw new Error('the deleted task is still listed');

  step = 'pause';
  await page.goto(`${url}/queues/${queue}`);
  await page.getByRole('button', { name: 'Pause' }).click();
  await expectText('Queue paused');
  await page.locator('h1 .tag.paused').waitFor();
  await shot('queue-paused');

  step = 'resume';
  await page.getByRole('button', { name: 'Resume' }).click();
  await expectText('Queue resumed.');
  if (await page.locator('h1 .tag.paused').count() !== 0) throw new Error('the queue still shows paused');
  await shot('queue');

  step = 'workers';
  await page.goto(`${url}/workers`);
  await shot('workers');
} catch (e) {
  errors.push(`${step}: ${e.message}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
console.log(`every step held; screenshots in ${out}`);
