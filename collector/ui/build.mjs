// Builds the collector's UI: src/main.tsx → dist/app.js + dist/app.css, and the explorer's
// CodeMirror editor src/editor.ts → dist/editor.js (loaded on first use) (esbuild, minified,
// deterministic), and copies src/index.html and src/favicon.svg. dist/ is committed and
// embedded in calm-collector (collector/src/ui/mod.rs); scripts/build-ui runs this, and
// the test suite rebuilds and compares (tests/tests/ui_browser.rs).
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, 'dist');
mkdirSync(out, { recursive: true });

// The host page shows the panels of the Grafana host dashboard (one source for both):
// its stat and time-series panels by row, with their queries, legends and units.
function hostDashboard() {
  const d = JSON.parse(readFileSync(join(here, '../../dashboards/host.json'), 'utf8'));
  const sections = [];
  let cur = { title: '', stats: [], charts: [] };
  const walk = (panels) => {
    for (const p of panels) {
      if (p.type === 'row') {
        if (cur.stats.length || cur.charts.length) sections.push(cur);
        cur = { title: p.title || '', stats: [], charts: [] };
        walk(p.panels || []);
        continue;
      }
      const targets = (p.targets || []).filter((t) => t.expr && !t.hide).map((t) => ({ expr: t.expr, legend: t.legendFormat || '' }));
      const unit = p.fieldConfig?.defaults?.unit || '';
      if (p.type === 'stat' && targets.length) cur.stats.push({ title: p.title, unit, expr: targets[0].expr });
      else if (p.type === 'timeseries' && targets.length) cur.charts.push({ title: p.title, unit, targets });
    }
  };
  walk(d.panels || []);
  if (cur.stats.length || cur.charts.length) sections.push(cur);
  return { uid: d.uid, sections };
}

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  legalComments: 'none',
  charset: 'utf8',
  outdir: out,
  logLevel: 'warning',
};
await esbuild.build({
  ...common,
  entryPoints: { app: 'src/main.tsx' },
  jsx: 'automatic',
  jsxImportSource: 'preact',
  // The explorer loads the CodeMirror editor on first use, from /ui/editor.js.
  external: ['./editor.js'],
  define: { __HOST_DASHBOARD__: JSON.stringify(hostDashboard()) },
});
await esbuild.build({ ...common, entryPoints: { editor: 'src/editor.ts' } });
for (const f of ['index.html', 'favicon.svg']) copyFileSync(join(here, 'src', f), join(out, f));
