// The issue list (filters, sort, bulk resolve / ignore) and the issue page (event
// navigator, stack trace with app-only / full / raw views, context lines, tags,
// breadcrumbs with search, user, release, environment, resolve / ignore / reopen).
// Event data is attacker-controlled: it is only ever rendered as text.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { abs, ago, api, navigate, prom, useLoad, useLocation } from './lib';
import { Chart, Line } from './chart';
import { Status } from './main';

type Issue = {
  id: string;
  title: string;
  culprit?: string;
  level?: string;
  status: string;
  count: number;
  userCount: number;
  firstSeen: string;
  lastSeen: string;
  environments?: string[];
  releases?: string[];
  lastRelease?: string | null;
  firstRelease?: string | null;
  type?: string;
  platform?: string;
  isRegression?: boolean;
};

const STATUSES = ['unresolved', 'resolved', 'ignored', 'all'];
const SORTS: [string, string][] = [
  ['last_seen', 'Last seen'],
  ['first_seen', 'First seen'],
  ['count', 'Events'],
];
const s = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** An issue's running event count as a series: `calm_error_events_total` (written at
 * ingest with every stored event's count, so exact) summed over levels and environments. */
function totalExpr(ids: string[]) {
  const re = ids.map((i) => i.replace(/[^0-9]/g, '')).join('|');
  return `sum by (issue) (last_over_time(calm_error_events_total{issue=~"${re}"}[7d]))`;
}

/** Events per hour over the last 24 h for each issue (from the running counts). */
async function hourly(ids: string[]): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  if (!ids.length) return out;
  const end = Math.floor(Date.now() / 3600000) * 3600 + 3600;
  const d = await prom<any>('/api/v1/query_range', { query: totalExpr(ids), start: String(end - 24 * 3600), end: String(end), step: '3600' });
  for (const s of d.result || []) {
    const byT = new Map<number, number>((s.values || []).map((p: [number, string]) => [p[0], Number(p[1])]));
    const per: number[] = [];
    let prev = 0;
    for (let t = end - 24 * 3600; t <= end; t += 3600) {
      const v = byT.get(t);
      const cur = v === undefined ? prev : v;
      if (t > end - 24 * 3600) per.push(Math.max(0, cur - prev));
      prev = cur;
    }
    out.set(String(s.metric.issue), per);
  }
  return out;
}

function Sparkline(props: { values?: number[] }) {
  const v = props.values || [];
  const max = Math.max(1, ...v);
  const total = v.reduce((a, b) => a + b, 0);
  const w = 96;
  const h = 22;
  return (
    <svg class="spark" width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${total} events in the last 24 hours`}>
      {v.map((x, i) => {
        const bh = Math.round((x / max) * (h - 2));
        return <rect key={i} x={i * 4} y={h - bh} width={3} height={bh} />;
      })}
    </svg>
  );
}

export async function setStatus(id: string, status: string): Promise<Issue> {
  return api<Issue>(`/api/calm/v1/issues/${encodeURIComponent(id)}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ status }),
  });
}

/** Most issue ids one bulk request may carry (the API's limit). */
const BULK_IDS = 1000;

/** Sets the status of several issues, in requests of at most BULK_IDS ids. */
export async function setStatuses(ids: string[], status: string): Promise<{ changed: string[]; unchanged: string[]; notFound: string[] }> {
  const out = { changed: [] as string[], unchanged: [] as string[], notFound: [] as string[] };
  for (let i = 0; i < ids.length; i += BULK_IDS) {
    const q = new URLSearchParams();
    for (const id of ids.slice(i, i + BULK_IDS)) q.append('id', id);
    const r = await api<typeof out>(`/api/calm/v1/issues?${q.toString()}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ status }),
    });
    out.changed.push(...(r.changed || []));
    out.unchanged.push(...(r.unchanged || []));
    out.notFound.push(...(r.notFound || []));
  }
  return out;
}

export function Issues() {
  const loc = useLocation();
  const q = loc.search;
  const status = q.get('status') || 'unresolved';
  const sort = q.get('sort') || 'last_seen';
  const environment = q.get('environment') || '';
  const text = q.get('query') || '';
  const [extra, setExtra] = useState<Issue[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const [msg, setMsg] = useState('');
  const [search, setSearch] = useState(text);
  useEffect(() => setSearch(text), [text]);
  const params = (c?: string | null) => {
    const p = new URLSearchParams({ status, sort, limit: '100' });
    if (environment) p.set('environment', environment);
    if (text) p.set('query', text);
    if (c) p.set('cursor', c);
    return p.toString();
  };
  const st = useLoad(async () => {
    const r = await api<{ data: Issue[]; nextCursor: string | null }>(`/api/calm/v1/issues?${params()}`);
    setExtra([]);
    setCursor(r.nextCursor);
    setPicked(new Set());
    return r.data;
  }, [status, sort, environment, text]);
  const issues = useMemo(() => [...(st.data || []), ...extra], [st.data, extra]);
  const spark = useLoad(() => hourly(issues.map((i) => i.id)), [issues]);
  const envs = useMemo(() => Array.from(new Set(issues.flatMap((i) => i.environments || []).concat(environment ? [environment] : []))).sort(), [issues]);
  const setQ = (k: string, v: string) => {
    const p = new URLSearchParams(q);
    if (v) p.set(k, v);
    else p.delete(k);
    navigate(`/issues?${p.toString()}`);
  };
  const more = async () => {
    const r = await api<{ data: Issue[]; nextCursor: string | null }>(`/api/calm/v1/issues?${params(cursor)}`);
    setExtra([...extra, ...r.data]);
    setCursor(r.nextCursor);
  };
  const bulk = async (to: string) => {
    const ids = Array.from(picked);
    try {
      const r = await setStatuses(ids, to);
      const n = r.changed.length;
      const gone = r.notFound.length;
      setMsg(`${n} issue${n === 1 ? '' : 's'} set to ${to}${r.unchanged.length ? `, ${r.unchanged.length} already ${to}` : ''}${gone ? `, ${gone} not found` : ''}.`);
    } catch (e: any) {
      setMsg(`Nothing changed: ${String(e.message || e)}`);
    }
    st.reload();
  };
  const all = issues.length > 0 && issues.every((i) => picked.has(i.id));
  return (
    <>
      <h1>Issues</h1>
      <form
        class="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setQ('query', search.trim());
        }}
      >
        <label>
          Status{' '}
          <select value={status} onChange={(e) => setQ('status', e.currentTarget.value)}>
            {STATUSES.map((x) => (
              <option key={x} value={x}>{x}</option>
            ))}
          </select>
        </label>
        <label>
          Environment{' '}
          <select value={environment} onChange={(e) => setQ('environment', e.currentTarget.value)}>
            <option value="">any</option>
            {envs.map((x) => (
              <option key={x} value={x}>{x}</option>
            ))}
          </select>
        </label>
        <label>
          Sort{' '}
          <select value={sort} onChange={(e) => setQ('sort', e.currentTarget.value)}>
            {SORTS.map(([k, l]) => (
              <option key={k} value={k}>{l}</option>
            ))}
          </select>
        </label>
        <label>
          Search <input type="search" value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
        <button type="submit">Search</button>
      </form>
      <div class="bulk" role="group" aria-label="Bulk actions">
        <button type="button" disabled={!picked.size} onClick={() => bulk('resolved')}>Resolve selected</button>
        <button type="button" disabled={!picked.size} onClick={() => bulk('ignored')}>Ignore selected</button>
        <button type="button" disabled={!picked.size} onClick={() => bulk('unresolved')}>Reopen selected</button>
        <span role="status" class="muted">{msg}</span>
      </div>
      <Status st={st} />
      {st.data && (
        <div class="scroll" tabIndex={0} role="region" aria-label="Issue list">
          <table class="grid" id="issues">
            <thead>
              <tr>
                <th scope="col">
                  <input type="checkbox" aria-label="Select all issues" checked={all} onChange={() => setPicked(all ? new Set() : new Set(issues.map((i) => i.id)))} />
                </th>
                <th scope="col">Issue</th>
                <th scope="col" class="num">Events</th>
                <th scope="col">Last 24 h</th>
                <th scope="col" class="num">Users</th>
                <th scope="col">First seen</th>
                <th scope="col">Last seen</th>
                <th scope="col">Status</th>
                <th scope="col">Environment</th>
              </tr>
            </thead>
            <tbody>
              {issues.map((i) => (
                <tr key={i.id} data-issue={i.id}>
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`Select issue ${i.id}`}
                      checked={picked.has(i.id)}
                      onChange={() => {
                        const n = new Set(picked);
                        if (n.has(i.id)) n.delete(i.id);
                        else n.add(i.id);
                        setPicked(n);
                      }}
                    />
                  </td>
                  <td>
                    <span class={`level ${s(i.level)}`}>{s(i.level)}</span> <a href={`/issues/${encodeURIComponent(i.id)}`} class="title">{s(i.title) || '(no title)'}</a>
                    <div class="muted small mono">{s(i.culprit)}</div>
                  </td>
                  <td class="num count">{i.count}</td>
                  <td>
                    <Sparkline values={spark.data?.get(i.id)} />
                  </td>
                  <td class="num">{i.userCount}</td>
                  <td title={abs(i.firstSeen)}>{ago(i.firstSeen)}</td>
                  <td title={abs(i.lastSeen)}>{ago(i.lastSeen)}</td>
                  <td>
                    <span class={`badge st-${s(i.status)}`}>{s(i.status)}</span>
                    {i.isRegression && <span class="badge bad">regressed</span>}
                  </td>
                  <td>{(i.environments || []).map(s).join(', ')}</td>
                </tr>
              ))}
              {issues.length === 0 && (
                <tr>
                  <td colSpan={9} class="muted">No issues match.</td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
      {cursor && (
        <button type="button" onClick={more}>Load more</button>
      )}
    </>
  );
}

// --- the issue page ----------------------------------------------------------------

type Frame = Record<string, any>;

function frameTitle(f: Frame): string {
  const file = s(f.filename || f.abs_path || f.module || '?');
  const fn = s(f.function || '?');
  return `${fn} in ${file}${f.lineno !== undefined ? `:${s(f.lineno)}` : ''}`;
}

function FrameView(props: { f: Frame; open: boolean }) {
  const f = props.f;
  const line = Number(f.lineno);
  const pre: string[] = Array.isArray(f.pre_context) ? f.pre_context.map(s) : [];
  const post: string[] = Array.isArray(f.post_context) ? f.post_context.map(s) : [];
  const hasCtx = pre.length || post.length || f.context_line !== undefined;
  const vars = f.vars && typeof f.vars === 'object' ? Object.entries(f.vars) : [];
  return (
    <details class={'frame' + (f.in_app ? ' in-app' : '')} open={props.open}>
      <summary>
        <span class="mono">{frameTitle(f)}</span> {f.in_app && <span class="badge">in app</span>}
      </summary>
      {hasCtx ? (
        <ol class="ctx" start={isFinite(line) ? Math.max(1, line - pre.length) : 1}>
          {pre.map((l, i) => (
            <li key={'p' + i}>{l}</li>
          ))}
          {f.context_line !== undefined && <li class="hl">{s(f.context_line)}</li>}
          {post.map((l, i) => (
            <li key={'n' + i}>{l}</li>
          ))}
        </ol>
      ) : (
        <p class="muted small">No source context.</p>
      )}
      {vars.length > 0 && (
        <table class="kv">
          <tbody>
            {vars.map(([k, v]) => (
              <tr key={k}>
                <th scope="row" class="mono">{k}</th>
                <td class="mono">{s(v)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </details>
  );
}

function values(x: any): any[] {
  if (Array.isArray(x)) return x;
  if (x && Array.isArray(x.values)) return x.values;
  return [];
}

function Exceptions(props: { event: any }) {
  const excs = values(props.event.exception);
  const anyInApp = excs.some((e) => values(e?.stacktrace?.frames).some((f: Frame) => f.in_app));
  const [mode, setMode] = useState<'app' | 'full' | 'raw'>(anyInApp ? 'app' : 'full');
  if (!excs.length) return null;
  return (
    <section aria-label="Stack trace">
      <h2>
        Stack trace{' '}
        <span class="tabs" role="group" aria-label="Frames shown">
          {(
            [
              ['app', 'App only'],
              ['full', 'Full'],
              ['raw', 'Raw'],
            ] as const
          ).map(([k, l]) => (
            <button key={k} type="button" aria-pressed={mode === k} onClick={() => setMode(k)}>{l}</button>
          ))}
        </span>
      </h2>
      {mode === 'raw' ? (
        <pre class="raw" tabIndex={0} aria-label="Raw stack trace">
          {excs
            .map((e) => {
              const fr = values(e?.stacktrace?.frames)
                .slice()
                .reverse()
                .map((f: Frame) => `  at ${frameTitle(f)}`);
              return `${s(e?.type)}: ${s(e?.value)}\n${fr.join('\n')}`;
            })
            .join('\n\n')}
        </pre>
      ) : (
        excs
          .slice()
          .reverse()
          .map((e, i) => {
            // Most recent call first; in-app frames first in app-only mode.
            const frames: Frame[] = values(e?.stacktrace?.frames).slice().reverse();
            const shown = mode === 'app' ? frames.filter((f) => f.in_app) : frames;
            const firstApp = shown.findIndex((f) => f.in_app);
            return (
              <div class="exception" key={i}>
                <p>
                  <strong class="mono">{s(e?.type) || 'Error'}</strong>: <span class="exc-value">{s(e?.value)}</span>
                </p>
                {shown.length === 0 && <p class="muted">{frames.length ? 'No in-app frames; choose Full.' : 'No stack trace.'}</p>}
                {shown.map((f, j) => (
                  <FrameView key={j} f={f} open={j === (firstApp < 0 ? 0 : firstApp)} />
                ))}
              </div>
            );
          })
      )}
    </section>
  );
}

function Breadcrumbs(props: { event: any }) {
  const crumbs = values(props.event.breadcrumbs);
  const [find, setFind] = useState('');
  if (!crumbs.length) return null;
  const f = find.toLowerCase();
  const shown = crumbs.filter((c) => !f || JSON.stringify(c).toLowerCase().includes(f));
  return (
    <section aria-label="Breadcrumbs">
      <h2>Breadcrumbs ({crumbs.length})</h2>
      <label>
        Search breadcrumbs <input type="search" value={find} onInput={(e) => setFind(e.currentTarget.value)} />
      </label>
      <div class="scroll" tabIndex={0} role="region" aria-label="Breadcrumb list">
        <table class="grid crumbs">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Category</th>
              <th scope="col">Level</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((c, i) => (
              <tr key={i}>
                <td class="mono small">{typeof c.timestamp === 'number' ? abs(new Date(c.timestamp * 1000).toISOString()) : s(c.timestamp)}</td>
                <td>{s(c.category || c.type)}</td>
                <td>{s(c.level)}</td>
                <td>
                  {s(c.message)}
                  {c.data && (
                    <details>
                      <summary>data</summary>
                      <pre class="small" tabIndex={0}>{JSON.stringify(c.data, null, 2)}</pre>
                    </details>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function KV(props: { title: string; rows: [string, unknown][] }) {
  const rows = props.rows.filter(([, v]) => v !== undefined && v !== null && v !== '');
  if (!rows.length) return null;
  return (
    <section aria-label={props.title}>
      <h2>{props.title}</h2>
      <table class="kv">
        <tbody>
          {rows.map(([k, v], i) => (
            <tr key={i}>
              <th scope="row">{k}</th>
              <td class="mono">{s(v)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function tagRows(tags: any): [string, unknown][] {
  if (Array.isArray(tags)) return tags.map((t) => (Array.isArray(t) ? [s(t[0]), t[1]] : [s(t?.key), t?.value]));
  if (tags && typeof tags === 'object') return Object.entries(tags);
  return [];
}

interface TagValue {
  value: string;
  count: number;
}
interface TagKey {
  key: string;
  totalValues: number;
  uniqueValues: number;
  topValues: TagValue[];
}

/** Every event's tags, counted at ingest (exact, whatever bodies were kept). */
function TagDistribution(props: { id: string; count: number }) {
  const st = useLoad(() => api<TagKey[]>(`/api/calm/v1/issues/${encodeURIComponent(props.id)}/tags?limit=5`), [props.id, props.count]);
  const keys = st.data || [];
  return (
    <section aria-label="Tag distribution">
      <h2>Tags of all events</h2>
      <Status st={st} />
      {st.data && !keys.length && <p class="muted">No tags counted.</p>}
      <div class="tag-dist">
        {keys.map((k) => {
          const shown = k.topValues.reduce((a, v) => a + v.count, 0);
          const rest = k.totalValues - shown;
          return (
            <div class="tag-key" key={k.key}>
              <h3>
                {s(k.key)} <span class="muted small">{k.uniqueValues} value{k.uniqueValues === 1 ? '' : 's'}</span>
              </h3>
              <table class="kv">
                <tbody>
                  {k.topValues.map((v) => (
                    <tr key={v.value}>
                      <th scope="row" class="mono">{s(v.value)}</th>
                      <td class="num">{pct(v.count, k.totalValues)}</td>
                      <td>
                        <progress max={k.totalValues} value={v.count} aria-label={`${s(k.key)} ${s(v.value)}: ${v.count} of ${k.totalValues} events`} />
                      </td>
                    </tr>
                  ))}
                  {rest > 0 && (
                    <tr>
                      <th scope="row" class="muted">other values</th>
                      <td class="num">{pct(rest, k.totalValues)}</td>
                      <td>
                        <progress max={k.totalValues} value={rest} aria-label={`${s(k.key)} other values: ${rest} of ${k.totalValues} events`} />
                      </td>
                    </tr>
                  )}
                </tbody>
              </table>
            </div>
          );
        })}
      </div>
    </section>
  );
}

function pct(n: number, total: number): string {
  if (!total) return '0%';
  const p = (100 * n) / total;
  return `${p >= 10 || p === 0 ? Math.round(p) : p.toFixed(1)}%`;
}

function EventsChart(props: { issue: Issue }) {
  const first = Date.parse(props.issue.firstSeen) / 1000;
  const st = useLoad(async () => {
    const end = Math.floor(Date.now() / 1000) + 60;
    const range = Math.min(7 * 86400, Math.max(3600, end - first + 300));
    const step = Math.max(15, Math.round(range / 200));
    const d = await prom<any>('/api/v1/query_range', { query: totalExpr([props.issue.id]), start: String(end - range), end: String(end), step: String(step) });
    return (d.result || []).map((s: any): Line => ({ label: 'events (running total)', points: (s.values || []).map((p: [number, string]) => [p[0], Number(p[1])] as [number, number]) }));
  }, [props.issue.id, props.issue.count]);
  return (
    <section aria-label="Events over time" class="events-chart">
      <h2>Events over time</h2>
      <Status st={st} />
      {st.data && (st.data.length ? <Chart lines={st.data} title="Events over time" height={160} /> : <p class="muted">No event counts stored.</p>)}
    </section>
  );
}

export function IssuePage(props: { id: string }) {
  const issue = useLoad(() => api<Issue>(`/api/calm/v1/issues/${encodeURIComponent(props.id)}`), [props.id]);
  const events = useLoad(() => api<{ data: any[] }>(`/api/calm/v1/issues/${encodeURIComponent(props.id)}/events?limit=50`), [props.id]);
  const [idx, setIdx] = useState(0);
  const [busy, setBusy] = useState('');
  const [err, setErr] = useState('');
  useEffect(() => setIdx(0), [props.id]);
  const i = issue.data;
  const evs = events.data?.data || [];
  const ev = evs[Math.min(idx, evs.length - 1)];
  const change = async (to: string) => {
    setBusy(to);
    setErr('');
    try {
      await setStatus(props.id, to);
      issue.reload();
    } catch (e: any) {
      setErr(String(e.message || e));
    }
    setBusy('');
  };
  return (
    <>
      <p>
        <a href="/issues">← Issues</a>
      </p>
      <Status st={issue} />
      {i && (
        <>
          <h1 class="issue-title">
            <span class={`level ${s(i.level)}`}>{s(i.level)}</span> {s(i.title) || '(no title)'}
          </h1>
          <p class="mono muted">{s(i.culprit)}</p>
          <div class="actions" role="group" aria-label="Status">
            <span>
              Status: <strong id="issue-status">{s(i.status)}</strong>
            </span>
            {i.status !== 'resolved' && (
              <button type="button" class="primary" disabled={!!busy} onClick={() => change('resolved')}>Resolve</button>
            )}
            {i.status !== 'ignored' && (
              <button type="button" disabled={!!busy} onClick={() => change('ignored')}>Ignore</button>
            )}
            {i.status !== 'unresolved' && (
              <button type="button" disabled={!!busy} onClick={() => change('unresolved')}>Reopen</button>
            )}
            {err && <span class="error" role="alert">{err}</span>}
          </div>
          <dl class="facts">
            <div><dt>Events</dt><dd id="issue-count">{i.count}</dd></div>
            <div><dt>Users</dt><dd>{i.userCount}</dd></div>
            <div><dt>First seen</dt><dd title={abs(i.firstSeen)}>{ago(i.firstSeen)}</dd></div>
            <div><dt>Last seen</dt><dd title={abs(i.lastSeen)}>{ago(i.lastSeen)}</dd></div>
            <div><dt>Releases</dt><dd>{(i.releases || []).map(s).join(', ') || '—'}</dd></div>
            <div><dt>Environments</dt><dd>{(i.environments || []).map(s).join(', ') || '—'}</dd></div>
          </dl>
        </>
      )}
      {i && <EventsChart issue={i} />}
      {i && <TagDistribution id={props.id} count={i.count} />}
      <Status st={events} />
      {ev && (
        <>
          <nav class="events-nav" aria-label="Events">
            <button type="button" disabled={idx <= 0} onClick={() => setIdx(idx - 1)}>← Newer</button>
            <span>
              Event {Math.min(idx, evs.length - 1) + 1} of {evs.length}
              {evs.length >= 50 ? '+' : ''} · <span class="mono">{s(ev.event_id)}</span> · {abs(typeof ev.timestamp === 'number' ? new Date(ev.timestamp * 1000).toISOString() : s(ev.timestamp))}
            </span>
            <button type="button" disabled={idx >= evs.length - 1} onClick={() => setIdx(idx + 1)}>Older →</button>
          </nav>
          {(ev.logentry || ev.message) && (
            <section aria-label="Message">
              <h2>Message</h2>
              <pre class="message" tabIndex={0}>{s(ev.logentry?.formatted || ev.logentry?.message || ev.message)}</pre>
            </section>
          )}
          <Exceptions key={s(ev.event_id)} event={ev} />
          <Breadcrumbs key={'b' + s(ev.event_id)} event={ev} />
          <div class="two">
            <KV title="Tags" rows={tagRows(ev.tags)} />
            <KV
              title="Event"
              rows={[
                ['level', ev.level],
                ['release', ev.release],
                ['environment', ev.environment],
                ['platform', ev.platform],
                ['server', ev.server_name],
                ['transaction', ev.transaction],
                ['sdk', ev.sdk ? `${s(ev.sdk.name)} ${s(ev.sdk.version)}` : undefined],
              ]}
            />
            <KV title="User" rows={ev.user && typeof ev.user === 'object' ? Object.entries(ev.user) : []} />
          </div>
        </>
      )}
    </>
  );
}

export { navigate };
