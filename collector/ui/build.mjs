// Builds the collector's UI: src/main.tsx → dist/app.js + dist/app.css (esbuild, minified,
// deterministic), and copies src/index.html and src/favicon.svg. dist/ is committed and
// embedded in calm-collector (collector/src/ui/mod.rs); scripts/build-ui runs this, and
// the test suite rebuilds and compares (tests/tests/ui_browser.rs).
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] || join(here, 'dist');
mkdirSync(out, { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.tsx' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  charset: 'utf8',
  outdir: out,
  logLevel: 'warning',
});
for (const f of ['index.html', 'favicon.svg']) copyFileSync(join(here, 'src', f), join(out, f));
