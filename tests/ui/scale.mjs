// Navigation Timing of the UI's pages on large data (run by tests/tests/ui_scale.rs):
//   node scale.mjs <collector-url> <expect.json>
// For each page: the median of 5 loads of first byte, DOMContentLoaded, load, and the
// moment the list or chart is drawn, plus a check that it shows the whole data set.
// Figures, not pass/fail timers; exits 1 only when a page does not show its data.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';

const [base, expectPath] = process.argv.slice(2);
const want = JSON.parse(readFileSync(expectPath, 'utf8'));
const failures = [];
const check = (ok, msg, detail) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${msg}${!ok && detail !== undefined ? ` -- ${JSON.stringify(detail)}` : ''}`);
  if (!ok) failures.push(msg);
};
const browser = await chromium.launch({ executablePath: process.env.CALM_CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') failures.push(`console: ${m.text()}`);
});
const enc = encodeURIComponent;
const pages = [
  { name: `fleet, ${want.agents} agents`, path: '/fleet', ready: '#fleet tbody tr', rows: '#fleet tbody tr', expect: want.agents },
  { name: `issues, ${want.issues} issues`, path: '/issues?status=all&sort=count', ready: '#issues tbody tr[data-issue]', rows: '#issues tbody tr[data-issue]', expect: 100 },
  { name: `issue, ${want.frames}-frame trace`, path: `/issues/${want.bigIssue}`, ready: '.frame', rows: '.frame', expect: want.frames },
  { name: `explore, 7 d x ${want.series} series`, path: `/explore?g0.expr=${enc(want.metric)}&g0.tab=0&g0.range_input=7d`, ready: '.chart canvas', rows: '.u-legend .u-series', expect: want.series + 1 },
  { name: 'host page', path: `/hosts/${enc(want.host)}?range=1h`, ready: '.panel .chart canvas', rows: '[data-panel]', expect: null },
];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const p of pages) {
  const runs = [];
  let n = 0;
  for (let i = 0; i < 5; i++) {
    await page.goto(base + p.path, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector(p.ready, { timeout: 60000 });
    if (p.name.startsWith('issue,')) await page.click('button:text-is("Full")');
    runs.push(
      await page.evaluate(() => {
        const e = performance.getEntriesByType('navigation')[0];
        const api = performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/'));
        return { ttfb: e.responseStart, dcl: e.domContentLoadedEventEnd, load: e.loadEventEnd, ready: performance.now(), api: Math.max(0, ...api.map((r) => r.duration)) };
      }),
    );
    n = await page.$$eval(p.rows, (r) => r.length);
  }
  if (p.expect !== null) check(n === p.expect, `${p.name}: shows ${p.expect}`, n);
  rows.push([p.name, ...['ttfb', 'dcl', 'load', 'ready', 'api'].map((k) => Math.round(median(runs.map((r) => r[k]))))]);
}
// Completion over 100,000 metric names (the name list answered by the browser here, as a
// large server would): the editor offers a capped list and stays responsive.
let completion = null;
{
  const names = Array.from({ length: 100000 }, (_, i) => `scale_metric_${String(i).padStart(6, '0')}_total`);
  names.push('node_cpu_seconds_total');
  const body = JSON.stringify({ status: 'success', data: names });
  const p2 = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  p2.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  await p2.route('**/api/v1/label/__name__/values*', (r) => r.fulfill({ status: 200, contentType: 'application/json', body }));
  await p2.goto(base + '/explore', { waitUntil: 'domcontentloaded' });
  await p2.waitForSelector('#expr-0[data-ready] .cm-content', { timeout: 60000 });
  await p2.click('#expr-0 .cm-content');
  const t0 = Date.now();
  await p2.keyboard.type('scale_metric_09');
  const opt = p2.locator('#expr-0 .cm-tooltip-autocomplete li', { hasText: 'scale_metric_09' }).first();
  const ok = await opt.waitFor({ timeout: 30000 }).then(() => true, () => false);
  const shownMs = Date.now() - t0;
  const rendered = await p2.$$eval('#expr-0 .cm-tooltip-autocomplete li', (l) => l.length);
  // The page answers right away afterwards (a frame within the wait, not a timer bar).
  const t1 = Date.now();
  await p2.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  completion = { names: names.length, shownMs, rendered, frameMs: Date.now() - t1 };
  check(ok && rendered > 0 && rendered <= 60, `completion over ${names.length} metric names offers a capped list (${rendered} rendered)`, completion);
  await p2.close();
}
const served = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/ui/')).map((e) => [new URL(e.name).pathname, e.transferSize, e.decodedBodySize]));
await browser.close();
console.log('\nNavigation Timing on large data, median of 5 loads (ms)');
console.log('(ready = list or chart drawn; api = the slowest API request of the page, in the collector under test)');
console.log('page                              ttfb    dcl   load  ready    api');
for (const r of rows) console.log(`${r[0].padEnd(32)} ${String(r[1]).padStart(6)} ${String(r[2]).padStart(6)} ${String(r[3]).padStart(6)} ${String(r[4]).padStart(6)} ${String(r[5]).padStart(6)}`);
console.log('\nbundle on a reload: path, bytes transferred (a 304 revalidation by ETag), bytes decoded');
for (const s of served) console.log(`  ${s[0]} ${s[1]} ${s[2]}`);
console.log(`\ncompletion over ${completion?.names} metric names: list shown ${completion?.shownMs} ms after typing began (15 keys), ${completion?.rendered} options rendered, next frame ${completion?.frameMs} ms`);
const summary = { failures, timing: rows, served, completion };
// bench/run-ui reads the figures from here (CALM_UI_SCALE_OUT).
if (process.env.CALM_UI_SCALE_OUT) writeFileSync(process.env.CALM_UI_SCALE_OUT, JSON.stringify(summary, null, 1));
console.log(JSON.stringify(summary));
process.exit(failures.length ? 1 : 0);
