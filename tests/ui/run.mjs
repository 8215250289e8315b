// Drives the collector's built-in UI in headless Chromium (Debian's chromium through
// playwright-core) and checks what a user would see. Run by tests/tests/ui_browser.rs:
//
//   node tests/ui/run.mjs <collector-url> <out-dir>
//
// <out-dir>/expect.json says what was sent (hosts, issues with counts, hostile text,
// alert names by state). Writes screenshots of every page (light + dark, desktop +
// phone) to <out-dir>, prints each check, Navigation Timing figures (median of 5
// loads), and a JSON summary as the last line; exits 1 when a check failed.
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const [base, out] = process.argv.slice(2);
if (!base || !out) {
  console.error('usage: node run.mjs <collector-url> <out-dir>');
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const want = JSON.parse(readFileSync(join(out, 'expect.json'), 'utf8'));
const origin = new URL(base).origin;
const failures = [];
const notes = [];
function check(cond, msg, detail) {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${msg}${!cond && detail !== undefined ? ` -- ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
  if (!cond) failures.push(msg);
  return cond;
}
const enc = encodeURIComponent;

async function api(path, init) {
  const r = await fetch(base + path, init);
  return r.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CALM_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

/** A context whose pages report console errors/warnings, page errors, failed and
 * off-origin requests, HTTP errors and dialogs as failures. */
async function newContext(opts, label) {
  const ctx = await browser.newContext({ ...opts });
  await ctx.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin !== origin) {
      failures.push(`${label}: request left the collector's origin: ${url}`);
      return route.abort();
    }
    return route.continue();
  });
  ctx.on('page', (page) => watch(page, label));
  return ctx;
}
function watch(page, label) {
  const where = () => `${label} ${page.url().replace(origin, '')}`;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') failures.push(`${where()}: console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => failures.push(`${where()}: page error: ${e.message}`));
  page.on('dialog', (d) => {
    failures.push(`${where()}: a dialog opened: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('requestfailed', (r) => {
    const err = r.failure()?.errorText || '';
    // A stale query the app aborted itself (a newer one replaced it) is not a failure.
    if (err.includes('ERR_ABORTED') && (r.resourceType() === 'fetch' || r.resourceType() === 'xhr')) {
      notes.push(`${where()}: aborted ${r.url()}`);
      return;
    }
    failures.push(`${where()}: request failed: ${r.url()} ${err}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) failures.push(`${where()}: HTTP ${r.status()} for ${r.url()}`);
  });
}

async function open(page, path, ready) {
  await page.goto(base + path, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector(ready, { timeout: 20000 });
}

/** Nothing injected: no element or handler from data, no javascript: link, no flag set. */
async function noInjection(page, where) {
  const r = await page.evaluate(() => {
    // Every element, also inside shadow roots (the explorer's editor lives in one).
    const all = [];
    const walk = (root) => {
      for (const e of root.querySelectorAll('*')) {
        all.push(e);
        if (e.shadowRoot) walk(e.shadowRoot);
      }
    };
    walk(document);
    return {
      xss: window.__xss === 1,
      // (CodeMirror's own cursor helpers, <img class="cm-widgetBuffer"> without a src, aside)
      imgs: all.filter((e) => e.matches('img, iframe, object, embed') && !(e.matches('img.cm-widgetBuffer') && !e.hasAttribute('src'))).length,
      scripts: all.filter((e) => e.tagName === 'SCRIPT' && !e.src.endsWith('/ui/app.js')).length,
      styles: all.filter((e) => e.tagName === 'STYLE').length,
      jsLinks: all.filter((a) => a.matches('a[href]') && /^\s*javascript:/i.test(a.getAttribute('href'))).length,
      handlers: all.filter((e) => [...e.attributes].some((a) => /^on/i.test(a.name))).length,
    };
  });
  check(!r.xss && !r.imgs && !r.scripts && !r.styles && !r.jsLinks && !r.handlers, `${where}: no injected element, style element, handler or javascript: link`, r);
}
const bodyText = (page) => page.evaluate(() => document.body.innerText);
/** The text of the explorer's editors (CodeMirror in a shadow root; its placeholder is
 * not text). */
const editorTexts = (page) =>
  page.$$eval('.editor', (eds) =>
    eds.map((ed) =>
      [...(ed.shadowRoot?.querySelectorAll('.cm-line') || [])]
        .map((l) => [...l.childNodes].filter((n) => !n.classList?.contains('cm-placeholder')).map((n) => n.textContent).join(''))
        .join('\n'),
    ),
  );
const editorText = async (page, i = 0) => (await editorTexts(page))[i];
const option = (page, text) => page.locator('#expr-0 .cm-tooltip-autocomplete li', { hasText: text }).first();
// CodeMirror takes Enter as "accept" only 75 ms (its interactionDelay) after the list
// last changed, so a key pressed in the same instant runs the query instead; a user
// reads the list first, and so does the test (a pause, not a timing assertion).
const shown = (loc) => loc.waitFor({ timeout: 10000 }).then(() => loc.page().waitForTimeout(300)).then(() => true, () => false);

/** Each chart: series in its legend, points given, and coloured (non-grey) pixels drawn. */
async function charts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('.chart')].map((ch) => {
      const c = ch.querySelector('canvas');
      let ink = 0;
      if (c && c.width && c.height) {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.abs(d[i] - d[i + 1]) + Math.abs(d[i + 1] - d[i + 2]) > 60) ink++;
      }
      return { title: ch.closest('[data-panel]')?.getAttribute('data-panel') || '', series: ch.querySelectorAll('.u-legend .u-series').length - 1, points: Number(ch.dataset.points || 0), ink };
    }),
  );
}
async function expandAll(page) {
  for (let i = 0; i < 200; i++) {
    const s = page.locator('details:not([open]) > summary').first();
    if ((await s.count()) === 0) break;
    await s.click();
  }
}
async function tabTo(page, pred, max = 120) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(pred)) return true;
  }
  return false;
}

// --- which pages ----------------------------------------------------------------------
const issues = (await api('/api/calm/v1/issues?status=all&limit=1000')).data;
const byPrefix = (p) => issues.find((i) => i.title.startsWith(p));
const mainIssue = byPrefix('ZeroDivisionError');
const hostileIssue = byPrefix('RuntimeError: hostile value');
const host = want.hosts[0];
const PAGES = [
  { name: 'fleet', path: '/fleet', ready: '#fleet tbody tr' },
  { name: 'host', path: `/hosts/${enc(host)}?range=5m`, ready: '.panel .chart canvas' },
  { name: 'explore', path: `/explore?g0.expr=${enc('node_load1')}&g1.expr=${enc('calm_ui_hostile')}&g0.tab=0&g0.range_input=15m`, ready: '.chart canvas' },
  { name: 'graph-link', path: `/graph?g0.expr=${enc('node_load1')}&g0.tab=1`, ready: '#result-table tbody tr' },
  { name: 'explore-tree', path: `/explore?g0.expr=${enc('sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / on(instance) node_load1')}&g0.tab=explain`, ready: '#parse-trees .tree-node' },
  { name: 'issues', path: '/issues?status=all', ready: '#issues tbody tr[data-issue]' },
  { name: 'issue', path: `/issues/${mainIssue?.id}`, ready: '.frame' },
  { name: 'issue-hostile', path: `/issues/${hostileIssue?.id}`, ready: '.events-nav' },
  { name: 'alerts', path: '/alerts', ready: 'details.rule' },
  { name: 'rules', path: '/rules', ready: 'table.rules tbody tr' },
];
check(mainIssue && hostileIssue, 'the SDK scenario issues exist in the API', issues.map((i) => i.title));

const started = Date.now();
const ctx = await newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' }, 'desktop-light');
const page = await ctx.newPage();

// Fleet.
await open(page, '/fleet', '#fleet tbody tr');
{
  const links = await page.$$eval('#fleet tbody tr td:first-child a', (as) => as.map((a) => ({ text: a.textContent, href: a.getAttribute('href') })));
  for (const h of want.hosts) check(links.some((l) => l.text === h && l.href === `/hosts/${enc(h)}`), `fleet lists host ${h} linking to its host page`, links);
  check(links.some((l) => l.text === want.hostileHost), 'fleet shows the hostile host name as text', links);
  const rows = await page.$$eval('#fleet tbody tr', (r) => r.map((x) => x.innerText));
  check(rows.some((r) => r.includes(want.agentVersion)), `fleet shows the agent version ${want.agentVersion}`, rows);
  check((await bodyText(page)).includes(want.hostileError), 'fleet shows the hostile last error as text');
  const silent = await page.$$eval('#fleet tbody tr', (r) => r.map((x) => ({ host: x.querySelector('td a').textContent, silent: x.classList.contains('silent') })));
  check(silent.every((r) => r.silent === (r.host === want.quietHost)), `only ${want.quietHost} (no heartbeat for 10 minutes) is marked silent`, silent);
  await noInjection(page, 'fleet');
}

// Host page: every chart drawn.
await open(page, PAGES[1].path, '.panel .chart canvas');
await page.waitForFunction(() => document.querySelectorAll('[data-panel]').length > 0 && !document.querySelector('[role=status]'), null, { timeout: 30000 }).catch(() => {});
{
  const panels = await page.$$eval('[data-panel]', (p) => p.map((x) => x.getAttribute('data-panel')));
  const cs = await charts(page);
  const must = ['CPU by mode', 'Load average', 'Memory', 'Disk throughput', 'Network traffic', 'Filesystem used'];
  for (const t of must) {
    const c = cs.find((x) => x.title === t);
    check(c && c.series >= 1 && c.points >= 2 * c.series && c.ink > 20, `host page: "${t}" (Grafana host dashboard panel) drawn with series, 2+ points each, and lines`, c || panels);
  }
  console.log(`host page: ${cs.length} of ${panels.length} Grafana host dashboard panels have data here: no data in ${JSON.stringify(panels.filter((p) => !cs.some((c) => c.title === p)))}`);
  const stats = await page.$$eval('.stats div', (d) => d.map((x) => [x.querySelector('dt').textContent, x.querySelector('dd').textContent]));
  check(stats.length >= 4 && ['Uptime', 'CPU cores', 'Memory total'].every((t) => stats.some(([k, v]) => k === t && v !== '—')), 'host page: overview stats have values', stats);
  const fs = await page.$$eval('#filesystems tbody tr', (r) => r.length);
  check(fs >= 1, 'host page lists filesystems', fs);
}

// Explorer: two expressions on one graph, hostile label values as text, hover, legend.
const explorePath = PAGES[2].path;
await open(page, explorePath, '.chart canvas');
{
  const cs = await charts(page);
  check(cs.length === 1 && cs[0].series >= 2 && cs[0].ink > 50, 'explorer graphs both expressions', cs);
  const legend = await page.$$eval('.u-legend .u-series .u-label', (l) => l.map((x) => x.textContent));
  check(legend.some((l) => l.startsWith('node_load1{') && l.includes(`instance="${host}"`)), 'legend names the node_load1 series of the host', legend);
  check(legend.some((l) => l.includes(`payload=${JSON.stringify(want.hostileLabel)}`)), 'legend shows the hostile label value as text (a PromQL string)', legend);
  const box = await page.locator('.chart canvas').first().boundingBox();
  await page.mouse.move(box.x + box.width * 0.9, box.y + box.height / 2);
  await page.mouse.move(box.x + box.width * 0.95, box.y + box.height / 2);
  const vals = await page.$$eval('.u-legend .u-series .u-value', (v) => v.map((x) => x.textContent));
  check(vals.some((v) => v && v !== '—' && v !== '--'), 'hovering the chart shows values in the legend', vals);
  await page.locator('.u-legend .u-series .u-label').nth(1).click();
  await page.locator('.u-legend .u-series .u-label').nth(1).click();
  await noInjection(page, 'explorer');
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('.chart canvas', { timeout: 20000 });
  await page.waitForSelector('.editor[data-ready] .cm-content', { timeout: 20000 });
  const exprs = await editorTexts(page);
  check(JSON.stringify(exprs) === JSON.stringify(['node_load1', 'calm_ui_hostile']) && page.url() === base + explorePath, 'reload keeps the explorer view (expressions, URL)', { exprs, url: page.url() });
  check((await charts(page))[0]?.series >= 2, 'reload draws the graph again');
}

// Completion, in the CodeMirror editor (codemirror-promql, completing from the API).
await open(page, '/explore', '#expr-0[data-ready] .cm-content');
{
  const styles = await page.evaluate(() => ({
    doc: document.querySelectorAll('style').length,
    adopted: document.querySelector('#expr-0')?.shadowRoot?.adoptedStyleSheets?.length || 0,
  }));
  check(styles.doc === 0 && styles.adopted > 0, "the editor is styled through constructed stylesheets in its shadow root, no <style> element (CSP style-src 'self' holds)", styles);
  await page.click('#expr-0 .cm-content');
  const t0 = Date.now();
  await page.keyboard.type('node_cpu_sec');
  check(await shown(option(page, 'node_cpu_seconds_total')), `completion offers node_cpu_seconds_total (${Date.now() - t0} ms after typing)`);
  await page.keyboard.press('Enter');
  check((await editorText(page)) === 'node_cpu_seconds_total', 'Enter accepts the suggestion', await editorText(page));
  await page.keyboard.press('Enter');
  await page.waitForSelector('.chart canvas', { timeout: 20000 });
  check(new URL(page.url()).searchParams.get('g0.expr') === 'node_cpu_seconds_total', 'Enter (no list open) runs it and puts the query in the URL', page.url());
  // Label names inside braces, then that label's values inside quotes (brackets and
  // quotes close themselves).
  await page.click('#expr-0 .cm-content');
  await page.keyboard.press('End');
  await page.keyboard.type('{mo');
  check(await shown(option(page, 'mode')), 'completion offers the label name mode inside braces');
  await page.keyboard.press('Enter');
  await page.keyboard.type('="id');
  check(await shown(option(page, 'idle')), 'completion offers the value idle inside the quotes');
  await page.keyboard.press('Enter');
  check((await editorText(page)) === 'node_cpu_seconds_total{mode="idle"}', 'accepted label and value', await editorText(page));
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => new URLSearchParams(location.search).get('g0.expr') === 'node_cpu_seconds_total{mode="idle"}', null, { timeout: 10000 }).catch(() => {});
  check(new URL(page.url()).searchParams.get('g0.expr') === 'node_cpu_seconds_total{mode="idle"}', 'the completed query runs', page.url());
  await page.waitForSelector('.chart canvas', { timeout: 20000 });
  // Shift-Enter adds a line instead of running.
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('+ 0');
  check((await editorText(page)) === 'node_cpu_seconds_total{mode="idle"}\n+ 0' && new URL(page.url()).searchParams.get('g0.expr') === 'node_cpu_seconds_total{mode="idle"}', 'Shift-Enter adds a line without running', await editorText(page));
  // The linter marks a broken query.
  await page.keyboard.type(' +');
  const lint = await page
    .waitForFunction(() => !!document.querySelector('#expr-0')?.shadowRoot?.querySelector('.cm-lintRange-error, .cm-lintPoint-error'), null, { timeout: 10000 })
    .then(() => true, () => false);
  check(lint, 'the linter marks a broken query');
  // Hostile label values in the completion list: text, not HTML.
  await page.evaluate(() => document.activeElement?.blur());
  await open(page, '/explore', '#expr-0[data-ready] .cm-content');
  await page.click('#expr-0 .cm-content');
  await page.keyboard.type('calm_ui_hostile{payload="');
  const hostileOpt = option(page, 'onerror');
  check(await shown(hostileOpt), 'completion lists the hostile label value');
  const optText = await hostileOpt.textContent().catch(() => '');
  check(optText.includes(want.hostileLabel), 'the hostile label value is shown as text in the completion list', optText);
  await noInjection(page, 'editor completion');
  await page.keyboard.press('Escape');
}

// The Tree tab: the parse tree from /api/v1/parse_query; a selector runs alone.
await open(page, PAGES.find((p) => p.name === 'explore-tree').path, '#parse-trees .tree-node');
{
  const nodes = await page.$$eval('#parse-trees .tree-node', (n) => n.map((x) => ({ type: x.dataset.type, own: x.querySelector('.tree-head > :first-child').textContent })));
  const want_ = [
    { type: 'binaryExpr', own: '/ on(instance)' },
    { type: 'aggregation', own: 'sum by (instance)' },
    { type: 'call', own: 'rate()' },
    { type: 'matrixSelector', own: 'node_cpu_seconds_total{mode!="idle"}[5m]' },
    { type: 'vectorSelector', own: 'node_load1' },
  ];
  check(JSON.stringify(nodes) === JSON.stringify(want_), 'the tree tab shows each node (operator, aggregation, call, selectors) with its text', nodes);
  await page.click('#parse-trees button.node-run:text-is("node_load1")');
  await page.waitForSelector('.chart canvas', { timeout: 20000 });
  const q = new URL(page.url()).searchParams;
  check(q.get('g0.expr') === 'node_load1' && q.get('g0.tab') === '0' && (await editorText(page)) === 'node_load1', 'clicking a selector in the tree graphs it alone', page.url());
}

// End time: in the URL (g0.end_input), kept across a reload, back / forward by a range.
{
  const fmt = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  const past = fmt(Math.floor(Date.now() / 1000 - 6 * 3600) * 1000);
  const path = `/explore?g0.expr=${enc('node_load1')}&g0.tab=1&g0.range_input=1h&g0.end_input=${enc(past)}`;
  await open(page, path, '#result-table tbody tr');
  // The editor's module loads after the table can show: a reload before it arrives
  // aborts its request (the browser's doing, not the app's).
  await page.waitForSelector('#expr-0[data-ready]', { timeout: 20000 });
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#result-table tbody tr', { timeout: 20000 });
  check((await page.inputValue('#end-input')) === past && new URL(page.url()).searchParams.get('g0.end_input') === past, 'the end time is kept in the URL across a reload', { input: await page.inputValue('#end-input'), url: page.url() });
  check((await page.textContent('#result-table tbody')).includes('Empty result.'), 'the table is evaluated at the end time (6 hours ago: before any sample)');
  await page.click('button[aria-label="Back by one range"]');
  await page.waitForFunction((p) => new URLSearchParams(location.search).get('g0.end_input') !== p, past, { timeout: 10000 }).catch(() => {});
  const back = new URL(page.url()).searchParams.get('g0.end_input');
  check(back === fmt(Date.parse(past.replace(' ', 'T') + 'Z') - 3600 * 1000), 'back moves the end time by one range (1h)', back);
  await page.click('button[aria-label="Forward by one range"]');
  await page.click('button[aria-label="Forward by one range"]');
  await page.waitForFunction(() => new URLSearchParams(location.search).get('g0.end_input') !== null, null, { timeout: 10000 }).catch(() => {});
  check(new URL(page.url()).searchParams.get('g0.end_input') === fmt(Date.parse(past.replace(' ', 'T') + 'Z') + 3600 * 1000), 'forward moves it by one range', page.url());
  await page.click('button:text-is("Now")');
  await page.waitForFunction(() => !new URLSearchParams(location.search).has('g0.end_input'), null, { timeout: 10000 }).catch(() => {});
  await page.waitForFunction(() => document.querySelectorAll('#result-table tbody tr td.mono').length > 0 && !document.querySelector('#result-table tbody')?.textContent?.includes('Empty result.'), null, { timeout: 20000 }).catch(() => {});
  const rows = await page.$$eval('#result-table tbody tr td:first-child', (r) => r.map((x) => x.textContent));
  check(!new URL(page.url()).searchParams.has('g0.end_input') && rows.some((r) => r.includes(`instance="${host}"`)), '"Now" clears the end time and the host series is back', { url: page.url(), rows });
}

// A Prometheus /graph link (as alerts send) opens its query in the table tab.
await open(page, PAGES[3].path, '#result-table tbody tr');
{
  await page.waitForSelector('.editor[data-ready] .cm-content', { timeout: 20000 });
  check((await editorText(page)) === 'node_load1', '/graph?g0.expr= link opens its query in the editor', await editorText(page));
  const rows = await page.$$eval('#result-table tbody tr td:first-child', (r) => r.map((x) => x.textContent));
  check(rows.some((r) => r.includes(`instance="${host}"`)), '/graph?g0.tab=1 shows the table with the host series', rows);
  check((await page.getAttribute('.tabs button[aria-pressed=true]', 'aria-pressed')) === 'true' && (await page.textContent('.tabs button[aria-pressed=true]')) === 'Table', 'table tab selected');
}

// Issues list: counts equal what the SDK sent.
await open(page, '/issues?status=all', '#issues tbody tr[data-issue]');
{
  const rows = await page.$$eval('#issues tbody tr[data-issue]', (r) =>
    r.map((x) => ({ title: x.querySelector('a.title').textContent, count: Number(x.querySelector('td.count').textContent), spark: x.querySelector('svg.spark')?.getAttribute('aria-label') })),
  );
  check(rows.length === want.issues.length, `issue list shows ${want.issues.length} issues`, rows);
  for (const w of want.issues)
    check(rows.some((r) => r.title.startsWith(w.title_prefix) && r.count === w.count), `issue "${w.title_prefix}…" shows ${w.count} events`, rows);
  await page.waitForFunction(() => document.querySelectorAll('svg.spark rect').length > 0, null, { timeout: 10000 }).catch(() => {});
  const sparks = await page.$$eval('#issues tbody tr[data-issue]', (r) => r.map((x) => x.querySelector('svg.spark')?.getAttribute('aria-label')));
  for (const w of want.issues)
    check(sparks.some((s) => s === `${w.count} events in the last 24 hours`), `sparkline of "${w.title_prefix}…" adds up to ${w.count} events`, sparks);
  check(rows.some((r) => r.title.includes(want.hostile)), 'the hostile message is shown as text in the list');
  await noInjection(page, 'issues');
  await page.selectOption('select >> nth=2', 'count');
  await page.waitForFunction(() => location.search.includes('sort=count'));
  await page.waitForSelector('#issues tbody tr[data-issue]');
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#issues tbody tr[data-issue]');
  const counts = await page.$$eval('#issues td.count', (c) => c.map((x) => Number(x.textContent)));
  check(counts.join() === [...counts].sort((a, b) => b - a).join() && (await page.inputValue('select >> nth=2')) === 'count', 'sort by events, kept in the URL across a reload', counts);
}

// Issue page: stack trace views, frames, breadcrumbs, event navigator.
await open(page, `/issues/${mainIssue.id}`, '.frame');
{
  const zd = want.issues.find((w) => w.title_prefix === 'ZeroDivisionError');
  check((await page.textContent('#issue-count')) === String(zd.count), `issue page shows ${zd.count} events`);
  await page.waitForSelector('.events-chart .chart canvas', { timeout: 10000 }).catch(() => {});
  const ec = (await charts(page))[0];
  check(ec && ec.points > 0 && ec.ink > 0, 'issue page draws the events-over-time chart', ec);
  const app = await page.$$eval('.frame', (f) => f.map((x) => ({ inApp: x.classList.contains('in-app'), title: x.querySelector('summary').textContent })));
  check(app.length >= 1 && app.every((f) => f.inApp) && app[0].title.includes('compute_ratio'), 'app-only view: in-app frames, the crashing function first', app);
  check((await page.textContent('.frame[open] ol.ctx li.hl'))?.includes('n / 0'), 'the crashing frame shows its context line');
  await page.click('button:text-is("Full")');
  const full = await page.$$eval('.frame', (f) => f.length);
  check(full >= app.length, 'full view shows all frames', { full, app: app.length });
  await page.click('button:text-is("Raw")');
  check((await page.textContent('pre.raw'))?.startsWith('ZeroDivisionError'), 'raw view shows the trace as text');
  const nav = await page.textContent('.events-nav span');
  check(nav.startsWith(`Event 1 of ${zd.count}`), 'event navigator: event 1 of all', nav);
  await page.click('button:text-is("Older →")');
  check((await page.textContent('.events-nav span')).startsWith('Event 2 of'), 'Older goes to the next event');
  await expandAll(page);
  const crumbs = await page.$$eval('table.crumbs tbody tr', (r) => r.length);
  await page.fill('section[aria-label=Breadcrumbs] input[type=search]', 'step 1 of');
  const found = await page.$$eval('table.crumbs tbody tr', (r) => r.map((x) => x.innerText));
  check(crumbs > 1 && found.length >= 1 && found.length < crumbs && found.every((t) => t.includes('step 1 of')), 'breadcrumb search filters the list', { crumbs, found });
  check((await bodyText(page)).includes('compute_ratio'), 'tags show the kind tag');
  await page.waitForSelector('section[aria-label="Tag distribution"] progress', { timeout: 10000 }).catch(() => {});
  const dist = await page.$$eval('section[aria-label="Tag distribution"] progress', (p) => p.map((x) => x.getAttribute('aria-label')));
  check(dist.includes(`kind compute_ratio: ${zd.count} of ${zd.count} events`), 'tag distribution counts every event of the issue (kept at ingest)', dist);
}

// Keyboard only: from the issue list to resolving an issue.
await open(page, '/issues', '#issues tbody tr[data-issue]');
{
  const vi = issues.find((i) => i.title.startsWith('ValueError'));
  await page.evaluate(() => document.activeElement?.blur());
  const reached = await tabTo(page, () => document.activeElement?.matches?.('a.title') && document.activeElement.textContent.startsWith('ValueError'));
  check(reached, 'keyboard: Tab reaches the ValueError issue link');
  await page.keyboard.press('Enter');
  await page.waitForSelector('h1.issue-title', { timeout: 20000 });
  const onResolve = await tabTo(page, () => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent === 'Resolve');
  check(onResolve, 'keyboard: Tab reaches the Resolve button');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#issue-status')?.textContent === 'resolved', null, { timeout: 10000 }).catch(() => {});
  check((await page.textContent('#issue-status')) === 'resolved', 'the resolve button changes the status on the page');
  check((await api(`/api/calm/v1/issues/${vi.id}`)).status === 'resolved', 'and in the API');
  await page.click('button:text-is("Reopen")');
  await page.waitForFunction(() => document.querySelector('#issue-status')?.textContent === 'unresolved', null, { timeout: 10000 }).catch(() => {});
  check((await api(`/api/calm/v1/issues/${vi.id}`)).status === 'unresolved', 'Reopen sets it back to unresolved');
}

// Bulk ignore from the list, then reopen.
await open(page, '/issues?status=unresolved', '#issues tbody tr[data-issue]');
{
  const kid = issues.find((i) => i.title.startsWith('KeyError')).id;
  await page.check(`tr[data-issue="${kid}"] input[type=checkbox]`);
  await page.click('button:text-is("Ignore selected")');
  await page.waitForFunction((id) => !document.querySelector(`tr[data-issue="${id}"]`), kid, { timeout: 10000 }).catch(() => {});
  check((await api(`/api/calm/v1/issues/${kid}`)).status === 'ignored', 'bulk ignore sets the picked issue to ignored');
  check((await page.textContent('.bulk [role=status]'))?.startsWith('1 issue set to ignored'), 'bulk ignore reports what changed (one bulk request)');
  await fetch(`${base}/api/calm/v1/issues/${kid}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{"status":"unresolved"}' });
}

// Hostile event: every channel shown as text, frames and breadcrumbs expanded.
await open(page, `/issues/${hostileIssue.id}`, '.events-nav');
{
  await page.click('button:text-is("Full")').catch(() => {});
  await expandAll(page);
  const text = await bodyText(page);
  const n = text.split(want.hostile).length - 1;
  check(n >= 4, 'hostile issue page: the payload is visible as text (value, tag, breadcrumb, user, data)', { occurrences: n });
  await noInjection(page, 'hostile issue');
}

// Alerts: states with counts, filters in the URL.
await open(page, '/alerts', 'details.rule');
{
  const btn = async (s) => (await page.textContent(`button.state-filter.st-${s}`)).trim();
  const c = { firing: want.firing.length, pending: want.pending.length, inactive: want.inactive.length };
  for (const s of ['firing', 'pending', 'inactive']) check((await btn(s)) === `${s} (${c[s]})`, `alert filter shows "${s} (${c[s]})"`, await btn(s));
  const rules = await page.$$eval('details.rule', (d) => d.map((x) => ({ name: x.querySelector('summary strong').textContent, state: x.querySelector('summary .badge').textContent })));
  for (const s of ['firing', 'pending', 'inactive']) for (const name of want[s]) check(rules.some((r) => r.name === name && r.state === s), `alert ${name} shown ${s}`, rules);
  const alertRows = await page.$$eval('tr.alert-row', (r) => r.map((x) => x.innerText));
  check(alertRows.some((r) => r.includes(`instance=${host}`)), 'firing alert lists its labels', alertRows);
  check(alertRows.some((r) => r.includes('<img src=x onerror="window.__xss=1;alert(3)">') && r.includes(want.hostileLabel)), 'hostile annotation and label shown as text', alertRows);
  check(alertRows.some((r) => r.includes('<a href="javascript:alert(4)">click</a>')), 'a javascript: link in an annotation is text, not a link');
  await noInjection(page, 'alerts');
  await page.click('button.state-filter.st-inactive');
  await page.waitForFunction(() => new URLSearchParams(location.search).get('state') === 'firing,pending');
  const hidden = async () => !(await page.$$eval('details.rule summary strong', (s) => s.map((x) => x.textContent))).some((n) => want.inactive.includes(n));
  check(await hidden(), 'unticking inactive hides the inactive rules');
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForSelector('details.rule');
  check((await hidden()) && (await page.getAttribute('button.state-filter.st-inactive', 'aria-pressed')) === 'false', 'the state filter is kept across a reload');
}

// Rules.
await open(page, '/rules', 'table.rules tbody tr');
{
  const t = await bodyText(page);
  for (const g of ['ui-host', 'ui-hostile']) check(t.includes(g), `rules page shows group ${g}`);
  for (const r of [...want.firing, ...want.pending, ...want.inactive, 'instance:node_load1:max']) check(t.includes(r), `rules page shows rule ${r}`);
  const health = await page.$$eval('table.rules tbody tr td:nth-child(4)', (c) => c.map((x) => x.textContent));
  check(health.every((h) => h === 'ok'), 'every rule healthy', health);
}
const functional = Date.now() - started;

// --- axe-core, screenshots --------------------------------------------------------------
const axeResults = {};
for (const scheme of ['light', 'dark']) {
  for (const [vpName, viewport] of [
    ['desktop', { width: 1280, height: 900 }],
    ['phone', { width: 390, height: 844 }],
  ]) {
    const label = `${vpName}-${scheme}`;
    const c = await newContext({ viewport, colorScheme: scheme, isMobile: vpName === 'phone', hasTouch: vpName === 'phone' }, label);
    const p = await c.newPage();
    for (const pg of PAGES) {
      await open(p, pg.path, pg.ready);
      await p.waitForFunction(() => !document.querySelector('[role=status]')?.textContent?.startsWith('Loading'), null, { timeout: 20000 }).catch(() => {});
      await p.waitForTimeout(150);
      await p.screenshot({ path: join(out, `${pg.name}-${label}.png`), fullPage: true });
      if (vpName === 'desktop') {
        await p.evaluate(axeSource);
        const res = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
        const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
        axeResults[`${pg.name}-${label}`] = res.violations.map((v) => `${v.impact}:${v.id}`);
        check(bad.length === 0, `axe ${pg.name} (${label}): no serious or critical violation`, bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ' ' + n.failureSummary) })));
      }
    }
    await c.close();
  }
}

// --- Navigation Timing: median of 5 loads per page ----------------------------------------
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const timing = {};
{
  const c = await newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' }, 'timing');
  const p = await c.newPage();
  for (const pg of PAGES) {
    const runs = [];
    for (let i = 0; i < 5; i++) {
      await open(p, pg.path, pg.ready);
      runs.push(
        await p.evaluate(() => {
          const n = performance.getEntriesByType('navigation')[0];
          return { ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, ready: performance.now() };
        }),
      );
    }
    timing[pg.name] = Object.fromEntries(['ttfb', 'dcl', 'load', 'ready'].map((k) => [k, Math.round(median(runs.map((r) => r[k])))]));
  }
  await c.close();
  console.log('\nNavigation Timing, median of 5 loads (ms): ttfb = first byte, dcl = DOMContentLoaded, ready = list or chart drawn');
  console.log('page            ttfb   dcl  load  ready');
  for (const [k, v] of Object.entries(timing)) console.log(`${k.padEnd(14)} ${String(v.ttfb).padStart(5)} ${String(v.dcl).padStart(5)} ${String(v.load).padStart(5)} ${String(v.ready).padStart(6)}`);
}

await browser.close();
const summary = { failures, checks_failed: failures.length, functional_ms: functional, total_ms: Date.now() - started, timing, axe: axeResults, aborted: notes.length };
writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2));
if (failures.length) {
  console.log('\nFAILURES:');
  for (const f of failures) console.log(' - ' + f);
}
console.log(JSON.stringify(summary));
process.exit(failures.length ? 1 : 0);
