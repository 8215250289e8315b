// The explorer: several PromQL expressions on one graph (or a table), range, resolution
// and stacking, all kept in the URL with Prometheus' parameter names (g0.expr, g1.expr,
// g0.tab, g0.range_input, g0.step_input, g0.stacked), so /graph?g0.expr=…&g0.tab=1
// links from alerts open here.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, navigate, num, parseDuration, prom, seriesName, useLocation } from './lib';
import { Chart, Line } from './chart';

const RANGES = ['5m', '15m', '30m', '1h', '3h', '6h', '12h', '1d', '2d', '7d', '14d'];
/** Most suggestions shown (names are filtered in one pass, never all rendered). */
const MAX_SUGGESTIONS = 30;
/** Most series drawn per expression. */
const MAX_SERIES = 100;

type View = { exprs: string[]; tab: 'graph' | 'table'; range: string; step: string; stacked: boolean };

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
    tab: tab === '1' || tab === 'table' ? 'table' : 'graph',
    range: parseDuration(range) ? range : '1h',
    step: q.get('g0.step_input') || '',
    stacked: q.get('g0.stacked') === '1',
  };
}

export function writeView(v: View): string {
  const q = new URLSearchParams();
  v.exprs.forEach((e, i) => q.set(`g${i}.expr`, e));
  q.set('g0.tab', v.tab === 'table' ? '1' : '0');
  q.set('g0.range_input', v.range);
  if (v.step) q.set('g0.step_input', v.step);
  if (v.stacked) q.set('g0.stacked', '1');
  return `/explore?${q.toString()}`;
}

let namesCache: Promise<string[]> | null = null;
function metricNames(): Promise<string[]> {
  if (!namesCache) {
    namesCache = api<{ data: string[] }>('/api/v1/label/__name__/values').then(
      (r) => r.data || [],
      (e) => {
        namesCache = null;
        throw e;
      },
    );
  }
  return namesCache;
}

const cache = new Map<string, Promise<string[]>>();
/** A list from the API, fetched once per URL (a failed fetch is tried again later). */
function cached(url: string): Promise<string[]> {
  let p = cache.get(url);
  if (!p) {
    p = api<{ data: string[] }>(url).then(
      (r) => r.data || [],
      (e) => {
        cache.delete(url);
        throw e;
      },
    );
    cache.set(url, p);
  }
  return p;
}

/** What is being typed before the cursor: a metric name, a label name inside `{…}`, or
 * a label value inside its quotes; with the candidates' source. */
export type Ctx = { start: number; word: string; source: () => Promise<string[]>; quote: boolean };
export function contextAt(text: string, pos: number): Ctx | null {
  const before = text.slice(0, pos);
  const open = before.lastIndexOf('{');
  if (open > before.lastIndexOf('}')) {
    const mm = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(text.slice(0, open));
    const match = mm ? `&match[]=${encodeURIComponent(mm[1])}` : '';
    const seg = before.slice(open + 1);
    if ((seg.match(/"/g) || []).length % 2 === 1) {
      const v = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(seg);
      if (!v) return null;
      return { start: pos - v[3].length, word: v[3], quote: true, source: () => cached(`/api/v1/label/${encodeURIComponent(v[1])}/values?${match.slice(1)}`) };
    }
    const l = /(^|[{,\s])([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(seg);
    if (!l) return null;
    const w = l[2] || '';
    return { start: pos - w.length, word: w, quote: false, source: () => cached(`/api/v1/labels?${match.slice(1)}`).then((n) => n.filter((x) => x !== '__name__')) };
  }
  const m = /[a-zA-Z_:][a-zA-Z0-9_:]*$/.exec(before);
  if (!m) return null;
  if ((before.slice(0, m.index).match(/"/g) || []).length % 2 === 1) return null;
  return { start: m.index, word: m[0], quote: false, source: metricNames };
}

function suggest(names: string[], word: string): string[] {
  const w = word.toLowerCase();
  const prefix: string[] = [];
  const inner: string[] = [];
  for (const n of names) {
    const i = n.toLowerCase().indexOf(w);
    if (i === 0) {
      if (n !== word) prefix.push(n);
      if (prefix.length >= MAX_SUGGESTIONS) break;
    } else if (i > 0 && inner.length < MAX_SUGGESTIONS) inner.push(n);
  }
  return prefix.concat(inner).slice(0, MAX_SUGGESTIONS);
}

function Editor(props: { id: string; value: string; onChange: (v: string) => void; onRun: () => void; label: string }) {
  const ta = useRef<HTMLTextAreaElement>(null);
  const [items, setItems] = useState<string[]>([]);
  const [sel, setSel] = useState(0);
  const [word, setWord] = useState<Ctx | null>(null);
  const listId = props.id + '-suggestions';

  const update = (text: string, pos: number) => {
    const w = contextAt(text, pos);
    setWord(w);
    if (!w || (w.word.length < 1 && w.source === metricNames)) {
      setItems([]);
      return;
    }
    w.source().then(
      (names) => {
        const cur = ta.current;
        if (!cur || cur.value !== text) return; // stale
        setItems(suggest(names, w.word));
        setSel(0);
      },
      () => setItems([]),
    );
  };
  const accept = (name: string) => {
    if (!word || !ta.current) return;
    const v = props.value;
    const end = word.start + word.word.length;
    const ins = word.quote ? JSON.stringify(name).slice(1, -1) : name;
    const next = v.slice(0, word.start) + ins + v.slice(end);
    // The text and the caret are set on the element at once, before the next key can
    // arrive: a caret set later (in a frame callback) moved keys typed meanwhile before
    // the ones typed after the accept. The controlled value then equals the element's,
    // so the re-render leaves the caret where it is.
    const pos = word.start + ins.length;
    ta.current.value = next;
    ta.current.focus();
    ta.current.setSelectionRange(pos, pos);
    props.onChange(next);
    setItems([]);
  };
  const onKey = (e: KeyboardEvent) => {
    if (items.length) {
      if (e.key === 'ArrowDown') {
        setSel((s) => (s + 1) % items.length);
        e.preventDefault();
        return;
      }
      if (e.key === 'ArrowUp') {
        setSel((s) => (s - 1 + items.length) % items.length);
        e.preventDefault();
        return;
      }
      if (e.key === 'Enter' || e.key === 'Tab') {
        accept(items[sel]);
        e.preventDefault();
        return;
      }
      if (e.key === 'Escape') {
        setItems([]);
        e.preventDefault();
        return;
      }
    }
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      props.onRun();
    }
  };
  return (
    <div class="editor">
      <textarea
        id={props.id}
        ref={ta}
        rows={1}
        spellcheck={false}
        aria-label={props.label}
        aria-autocomplete="list"
        aria-controls={listId}
        aria-activedescendant={items.length ? `${listId}-${sel}` : undefined}
        placeholder="Expression (press Enter to run, Shift+Enter for a new line)"
        value={props.value}
        onInput={(e) => {
          const t = e.currentTarget;
          props.onChange(t.value);
          update(t.value, t.selectionStart);
        }}
        onKeyDown={onKey}
        onBlur={() => setTimeout(() => setItems([]), 150)}
      />
      <ul id={listId} role="listbox" aria-label="Suggestions" class={'suggest' + (items.length ? '' : ' hidden')}>
        {items.map((it, i) => (
          <li
            key={it}
            id={`${listId}-${i}`}
            role="option"
            aria-selected={i === sel}
            class={i === sel ? 'sel' : ''}
            onMouseDown={(e) => {
              e.preventDefault();
              accept(it);
            }}
          >
            {it}
          </li>
        ))}
      </ul>
    </div>
  );
}

type Result = { expr: string; error?: string; lines: Line[]; table: { labels: string; value: string }[]; truncated: boolean };

async function run(v: View, signal: AbortSignal): Promise<Result[]> {
  const end = Date.now() / 1000;
  const range = parseDuration(v.range) || 3600;
  const stepIn = v.step ? Number(v.step) : NaN;
  const step = isFinite(stepIn) && stepIn > 0 ? stepIn : Math.max(1, Math.round(range / 250));
  return Promise.all(
    v.exprs.map(async (expr): Promise<Result> => {
      const out: Result = { expr, lines: [], table: [], truncated: false };
      if (!expr.trim()) return out;
      try {
        if (v.tab === 'graph') {
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

export function Explore() {
  const loc = useLocation();
  const urlView = useMemo(() => readView(loc.search), [loc.search.toString()]);
  const [exprs, setExprs] = useState<string[]>(urlView.exprs);
  const [results, setResults] = useState<Result[] | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => setExprs(urlView.exprs), [urlView]);
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
  const go = (patch: Partial<View>) => navigate(writeView({ ...urlView, exprs, ...patch }), false);
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
              onChange={(v) => setExprs(exprs.map((x, j) => (j === i ? v : x)))}
              onRun={() => go({})}
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
          </span>
          <label>
            Range{' '}
            <select value={urlView.range} onChange={(e) => go({ range: e.currentTarget.value })}>
              {(RANGES.includes(urlView.range) ? RANGES : [urlView.range, ...RANGES]).map((r) => (
                <option key={r} value={r}>{r}</option>
              ))}
            </select>
          </label>
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
      {!results && !busy && <p class="muted">Type a PromQL expression; metric names complete as you type.</p>}
    </>
  );
}

export { num };
