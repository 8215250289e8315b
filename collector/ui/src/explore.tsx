// The explorer: several PromQL expressions on one graph (or a table, or their parse
// trees), range, end time, resolution and stacking, all kept in the URL with Prometheus'
// parameter names (g0.expr, g1.expr, g0.tab, g0.range_input, g0.end_input,
// g0.step_input, g0.stacked), so /graph?g0.expr=…&g0.tab=1 links from alerts open here.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, navigate, num, parseDuration, prom, seriesName, useLocation } from './lib';
import { Chart, Line } from './chart';
import { PromNode, Tree } from './tree';

const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '2d', '7d', '14d'];
/** Most series drawn per expression. */
const MAX_SERIES = 100;

type Tab = 'graph' | 'table' | 'explain';
type View = { exprs: string[]; tab: Tab; range: string; end?: string; step: string; stacked: boolean };

export function readView(q: URLSearchParams): View {
  const exprs: string[] = [];
  for (let i = 0; i < 20; i++) {
    const e = q.get(`g${i}.expr`);
    if (e === null) break;
    exprs.push(e);
  }
  const tab = q.get('g0.tab');
  const range = q.get('g0.range_input') || '1h';
  return {
    exprs: exprs.length ? exprs : [''],
    tab: tab === '1' || tab === 'table' ? 'table' : tab === '2' || tab === 'explain' || tab === 'tree' ? 'explain' : 'graph',
    range: parseDuration(range) ? range : '1h',
    end: q.get('g0.end_input') || '',
    step: q.get('g0.step_input') || '',
    stacked: q.get('g0.stacked') === '1',
  };
}

export function writeView(v: View): string {
  const q = new URLSearchParams();
  v.exprs.forEach((e, i) => q.set(`g${i}.expr`, e));
  q.set('g0.tab', v.tab === 'table' ? '1' : v.tab === 'explain' ? 'explain' : '0');
  q.set('g0.range_input', v.range);
  if (v.end) q.set('g0.end_input', v.end);
  if (v.step) q.set('g0.step_input', v.step);
  if (v.stacked) q.set('g0.stacked', '1');
  return `/explore?${q.toString()}`;
}

/** An end time as Prometheus' UI writes it (`2026-12-06 18:30:00`, UTC). */
export function formatEnd(secs: number): string {
  return new Date(Math.round(secs) * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

/** `g0.end_input` in seconds: `YYYY-MM-DD HH:MM[:SS]` (UTC, as Prometheus' UI writes
 * it), RFC 3339, or Unix seconds; null when it is none of those. */
export function parseEnd(s: string): number | null {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(t);
  if (m) {
    const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    return isFinite(ms) ? ms / 1000 : null;
  }
  const ms = Date.parse(t);
  return /^\d{4}-\d{2}-\d{2}T/.test(t) && isFinite(ms) ? ms / 1000 : null;
}

type EditorModule = typeof import('./editor');
let editorModule: Promise<EditorModule> | null = null;
/** The CodeMirror editor, loaded on first use (dist/editor.js, beside app.js). */
function loadEditor(): Promise<EditorModule> {
  if (!editorModule) {
    editorModule = import('./editor.js').catch((e) => {
      editorModule = null;
      throw e;
    });
  }
  return editorModule;
}

type EditorProps = {
  id: string;
  value: string;
  /** The expression in the URL, set when `sync` changes (undefined: past the URL's last
   * one, or the text this editor had when the page navigated there itself). */
  fromUrl?: string;
  sync: unknown;
  onChange: (v: string) => void;
  onRun: (v: string) => void;
  label: string;
};

/** A PromQL editor (CodeMirror with codemirror-promql, in a shadow root: see editor.ts). */
function Editor(props: EditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const handle = useRef<import('./editor').EditorHandle | null>(null);
  const latest = useRef(props);
  latest.current = props;
  const [failed, setFailed] = useState('');
  useEffect(() => {
    let live = true;
    loadEditor().then(
      (m) => {
        const el = host.current;
        if (!live || !el) return;
        handle.current = m.mountEditor(el, {
          value: latest.current.value,
          label: latest.current.label,
          placeholder: 'Expression (press Enter to run, Shift+Enter for a new line)',
          onChange: (v) => latest.current.onChange(v),
          onRun: (v) => latest.current.onRun(v),
          fetchJson: (path) => api(path),
        });
        el.dataset.ready = '1';
      },
      (e) => live && setFailed(String(e?.message || e)),
    );
    return () => {
      live = false;
      handle.current?.destroy();
      handle.current = null;
    };
  }, []);
  // The text flows out of the editor as it is typed; it flows in only when the URL
  // changes (a link, back / forward, a removed expression). Setting it on every render
  // would undo keys typed while the page re-rendered with the text of a key before.
  useEffect(() => {
    if (props.fromUrl !== undefined) handle.current?.setValue(props.fromUrl);
  }, [props.sync]);
  return (
    <>
      <div class="editor" id={props.id} ref={host} />
      {failed && <p class="error" role="alert">The editor did not load: {failed}</p>}
    </>
  );
}

type Result = { expr: string; error?: string; lines: Line[]; table: { labels: string; value: string }[]; tree?: PromNode; truncated: boolean };

async function run(v: View, signal: AbortSignal): Promise<Result[]> {
  const parsedEnd = v.end ? parseEnd(v.end) : Date.now() / 1000;
  const end = parsedEnd ?? Date.now() / 1000;
  const range = parseDuration(v.range) || 3600;
  const stepIn = v.step ? Number(v.step) : NaN;
  const step = isFinite(stepIn) && stepIn > 0 ? stepIn : Math.max(1, Math.round(range / 250));
  return Promise.all(
    v.exprs.map(async (expr): Promise<Result> => {
      const out: Result = { expr, lines: [], table: [], truncated: false };
      if (!expr.trim()) return out;
      if (parsedEnd === null) {
        out.error = `the end time "${v.end}" is not YYYY-MM-DD HH:MM:SS (UTC), RFC 3339 or Unix seconds`;
        return out;
      }
      try {
        if (v.tab === 'explain') {
          out.tree = await prom<PromNode>('/api/v1/parse_query', { query: expr }, signal);
        } else if (v.tab === 'graph') {
          const d = await prom<any>('/api/v1/query_range', { query: expr, start: String(end - range), end: String(end), step: String(step) }, signal);
          const res: any[] = d.resultType === 'matrix' ? d.result : [];
          out.truncated = res.length > MAX_SERIES;
          out.lines = res.slice(0, MAX_SERIES).map((s) => ({
            label: seriesName(s.metric || {}),
            points: (s.values || []).map((p: [number, string]) => [p[0], Number(p[1])] as [number, number]),
          }));
        } else {
          const d = await prom<any>('/api/v1/query', { query: expr, time: String(end) }, signal);
          if (d.resultType === 'vector') out.table = d.result.map((s: any) => ({ labels: seriesName(s.metric || {}), value: s.value?.[1] ?? '' }));
          else if (d.resultType === 'matrix')
            out.table = d.result.map((s: any) => ({ labels: seriesName(s.metric || {}), value: (s.values || []).map((p: any) => `${p[1]} @${p[0]}`).join('\n') }));
          else out.table = [{ labels: d.resultType, value: String(d.result?.[1] ?? '') }];
        }
      } catch (e: any) {
        if (e.name === 'AbortError') throw e;
        out.error = String(e.message || e);
      }
      return out;
    }),
  );
}

/** The end time control: a UTC time (empty = now) and back / forward by one range. */
function EndTime(props: { view: View; go: (p: Partial<View>) => void }) {
  const v = props.view;
  const [text, setText] = useState(v.end || "");
  useEffect(() => setText(v.end || ""), [v.end]);
  const range = parseDuration(v.range) || 3600;
  const shift = (dir: number) => {
    const cur = (v.end && parseEnd(v.end)) || Date.now() / 1000;
    const next = cur + dir * range;
    props.go({ end: next >= Date.now() / 1000 ? '' : formatEnd(next) });
  };
  return (
    <span class="end-time" role="group" aria-label="End time">
      <button type="button" aria-label="Back by one range" title="Back by one range" onClick={() => shift(-1)}>
        ◀
      </button>
      <input
        type="text"
        id="end-input"
        class="end"
        aria-label="End time (UTC, empty for now)"
        placeholder="now"
        title="End time, UTC: YYYY-MM-DD HH:MM:SS, RFC 3339 or Unix seconds; empty for now"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onChange={(e) => props.go({ end: e.currentTarget.value.trim() })}
        onKeyDown={(e) => {
          if (e.key === 'Enter') {
            e.preventDefault();
            props.go({ end: e.currentTarget.value.trim() });
          }
        }}
      />
      <button type="button" aria-label="Forward by one range" title="Forward by one range" onClick={() => shift(1)}>
        ▶
      </button>
      {v.end && (
        <button type="button" onClick={() => props.go({ end: '' })}>
          Now
        </button>
      )}
    </span>
  );
}

export function Explore() {
  const loc = useLocation();
  const urlView = useMemo(() => readView(loc.search), [loc.search.toString()]);
  const [exprs, setExprs] = useState<string[]>(urlView.exprs);
  const [results, setResults] = useState<Result[] | null>(null);
  const [busy, setBusy] = useState(false);
  // The search this page last navigated to itself (a run, a tab, the range) and the
  // editors' text when it did. An editor whose expression in the new URL is the text it
  // had then keeps what was typed since (a key pressed between the navigation and its
  // render must not be undone); any other change of the URL (a link, back / forward, a
  // removed expression) sets the editors' text.
  const own = useRef<{ search: string; had: string[] } | null>(null);
  const sync = useMemo(() => {
    const mine = own.current && own.current.search === loc.search.toString() ? own.current.had : null;
    own.current = null;
    return { view: urlView, had: mine };
  }, [urlView]);
  // The same for the page's copy of the editors' text.
  useEffect(() => setExprs((cur) => urlView.exprs.map((e, i) => (sync.had?.[i] === e && cur[i] !== undefined ? cur[i] : e))), [sync]);
  useEffect(() => {
    if (!urlView.exprs.some((e) => e.trim())) {
      setResults(null);
      return;
    }
    const ac = new AbortController();
    setBusy(true);
    run(urlView, ac.signal).then(
      (r) => {
        setResults(r);
        setBusy(false);
      },
      () => setBusy(false),
    );
    return () => ac.abort();
  }, [urlView]);
  /** Navigates to the view with `patch`; `had` is what the editors hold now. */
  const go = (patch: Partial<View>, had: string[] = exprs) => {
    const to = writeView({ ...urlView, exprs, ...patch });
    own.current = { search: to.slice(to.indexOf('?') + 1), had };
    navigate(to, false);
  };
  const lines = useMemo(() => (results || []).flatMap((r) => r.lines), [results]);

  return (
    <>
      <h1>Explore</h1>
      <form
        class="explore"
        onSubmit={(e) => {
          e.preventDefault();
          go({});
        }}
      >
        {exprs.map((ex, i) => (
          <div class="expr-row" key={i}>
            <Editor
              id={`expr-${i}`}
              label={`Expression ${i + 1}`}
              value={ex}
              fromUrl={sync.had?.[i] === urlView.exprs[i] ? undefined : urlView.exprs[i]}
              sync={sync}
              onChange={(v) => setExprs((xs) => xs.map((x, j) => (j === i ? v : x)))}
              onRun={(v) => {
                const next = exprs.map((x, j) => (j === i ? v : x));
                go({ exprs: next }, next);
              }}
            />
            {exprs.length > 1 && (
              <button type="button" aria-label={`Remove expression ${i + 1}`} onClick={() => go({ exprs: exprs.filter((_, j) => j !== i) })}>
                ✕
              </button>
            )}
          </div>
        ))}
        <div class="controls">
          <button type="submit" class="primary">Execute</button>
          <button type="button" onClick={() => setExprs([...exprs, ''])}>Add expression</button>
          <span class="tabs" role="group" aria-label="View">
            <button type="button" aria-pressed={urlView.tab === 'table'} onClick={() => go({ tab: 'table' })}>Table</button>
            <button type="button" aria-pressed={urlView.tab === 'graph'} onClick={() => go({ tab: 'graph' })}>Graph</button>
            <button type="button" aria-pressed={urlView.tab === 'explain'} onClick={() => go({ tab: 'explain' })}>Tree</button>
          </span>
          <label>
            Range{' '}
            <select value={urlView.range} onChange={(e) => go({ range: e.currentTarget.value })}>
              {(RANGES.includes(urlView.range) ? RANGES : [urlView.range, ...RANGES]).map((r) => (
                <option key={r} value={r}>{r}</option>
              ))}
            </select>
          </label>
          <EndTime view={urlView} go={go} />
          <label>
            Resolution (s){' '}
            <input
              type="number"
              min="1"
              class="step"
              placeholder="auto"
              value={urlView.step}
              onChange={(e) => go({ step: e.currentTarget.value })}
            />
          </label>
          <label>
            <input type="checkbox" checked={urlView.stacked} onChange={(e) => go({ stacked: e.currentTarget.checked })} /> Stacked
          </label>
          {busy && <span class="muted" role="status">Loading…</span>}
        </div>
      </form>
      {results &&
        results.map(
          (r, i) =>
            (r.error || r.truncated) && (
              <p key={i} class="error" role="alert">
                {r.error ? `Expression ${i + 1}: ${r.error}` : `Expression ${i + 1}: showing the first ${MAX_SERIES} series.`}
              </p>
            ),
        )}
      {results && urlView.tab === 'graph' &&
        (lines.length ? <Chart lines={lines} stacked={urlView.stacked} height={340} title="Query result graph" /> : <p class="muted">No data in this range.</p>)}
      {results && urlView.tab === 'explain' && (
        <div id="parse-trees">
          {results.map(
            (r, i) =>
              r.tree && (
                <section key={i} class="tree" aria-label={`Parse tree of expression ${i + 1}`}>
                  <Tree node={r.tree} onRun={(text, range) => go({ exprs: [text], tab: range ? 'table' : 'graph' })} />
                </section>
              ),
          )}
        </div>
      )}
      {results && urlView.tab === 'table' && (
        <div class="scroll" tabIndex={0} role="region" aria-label="Query result table">
          <table class="grid" id="result-table">
            <thead>
              <tr>
                <th scope="col">Series</th>
                <th scope="col">Value</th>
              </tr>
            </thead>
            <tbody>
              {results.flatMap((r, i) =>
                r.table.map((row, j) => (
                  <tr key={`${i}-${j}`}>
                    <td class="mono">{row.labels}</td>
                    <td class="mono num">{row.value}</td>
                  </tr>
                )),
              )}
              {results.every((r) => r.table.length === 0) && (
                <tr>
                  <td colSpan={2} class="muted">Empty result.</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
      {!results && !busy && <p class="muted">Type a PromQL expression; functions, metric names, labels and values complete as you type.</p>}
    </>
  );
}

export { num };
