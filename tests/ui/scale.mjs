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
const served = await page.evaluate(() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/ui/')).map((e) => [new URL(e.name).pathname, e.transferSize, e.decodedBodySize]));
await browser.close();
console.log('\nNavigation Timing on large data, median of 5 loads (ms)');
console.log('(ready = list or chart drawn; api = the slowest API request of the page, in the collector under test)');
console.log('page                              ttfb    dcl   load  ready    api');
for (const r of rows) console.log(`${r[0].padEnd(32)} ${String(r[1]).padStart(6)} ${String(r[2]).padStart(6)} ${String(r[3]).padStart(6)} ${String(r[4]).padStart(6)} ${String(r[5]).padStart(6)}`);
console.log('\nbundle on a reload: path, bytes transferred (a 304 revalidation by ETag), bytes decoded');
for (const s of served) console.log(`  ${s[0]} ${s[1]} ${s[2]}`);
const summary = { failures, timing: rows, served };
// bench/run-ui reads the figures from here (CALM_UI_SCALE_OUT).
if (process.env.CALM_UI_SCALE_OUT) writeFileSync(process.env.CALM_UI_SCALE_OUT, JSON.stringify(summary, null, 1));
console.log(JSON.stringify(summary));
process.exit(failures.length ? 1 : 0);
