// One host: the panels of the Grafana host dashboard (dashboards/host.json, read at
// build time by build.mjs, so both show the same queries), with $job and $instance set
// to this host, plus its filesystems. calm-agent ships host metrics with job="node",
// instance=<host>, node_exporter's names.
import { useMemo } from 'preact/hooks';
import { bytes, navigate, num, parseDuration, prom, promStr, useLoad, useLocation } from './lib';
import { Chart, Line } from './chart';
import { Status } from './main';
import { writeView } from './explore';

type Target = { expr: string; legend: string };
type Dashboard = {
  uid: string;
  sections: { title: string; stats: { title: string; unit: string; expr: string }[]; charts: { title: string; unit: string; targets: Target[] }[] }[];
};
declare const __HOST_DASHBOARD__: Dashboard;
export const HOST_DASHBOARD: Dashboard = __HOST_DASHBOARD__;

const RANGES = ['5m', '15m', '1h', '6h', '1d', '7d'];
/** About 300 points per series, and never a step under 5 s. */
function stepFor(range: number) {
  return Math.max(5, Math.round(range / 300));
}

/** A Grafana unit as a formatter. */
function unitFmt(unit: string): (v: number) => string {
  switch (unit) {
    case 'bytes':
    case 'decbytes':
      return bytes;
    case 'Bps':
    case 'binBps':
      return (v) => `${bytes(v)}/s`;
    case 'percentunit':
      return (v) => `${num(v * 100)}%`;
    case 'percent':
      return (v) => `${num(v)}%`;
    case 's':
      return (v) => {
        const a = Math.abs(v);
        if (a >= 86400) return `${(v / 86400).toFixed(1)} d`;
        if (a >= 3600) return `${(v / 3600).toFixed(1)} h`;
        if (a >= 60) return `${(v / 60).toFixed(1)} min`;
        return `${num(v)} s`;
      };
    case 'ops':
    case 'iops':
    case 'pps':
      return (v) => `${num(v)}/s`;
    default:
      return num;
  }
}

const regexEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The dashboard's query for one host: $instance matches it exactly, $job anything. */
export function forHost(expr: string, host: string, step: number, range: number): string {
  return expr
    .split('"$instance"')
    .join(promStr(regexEscape(host)))
    .split('"$job"')
    .join('".+"')
    .split('$__rate_interval')
    .join(`${Math.max(60, 4 * step)}s`)
    .split('$__interval')
    .join(`${step}s`)
    .split('$__range')
    .join(`${range}s`);
}

function legendOf(fmt: string, metric: Record<string, string>, fallback: string): string {
  if (!fmt || fmt === '__auto') return fallback;
  return fmt.replace(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g, (_m, k) => metric[k] ?? '');
}

function Panel(props: { host: string; range: string; title: string; unit: string; targets: Target[] }) {
  const range = parseDuration(props.range) || 3600;
  const step = stepFor(range);
  const qs = props.targets.map((t) => forHost(t.expr, props.host, step, range));
  const st = useLoad(async () => {
    const end = Math.floor(Date.now() / 1000);
    const res = await Promise.all(qs.map((q) => prom<any>('/api/v1/query_range', { query: q, start: String(end - range), end: String(end), step: String(step) })));
    const lines: Line[] = [];
    res.forEach((d, i) =>
      (d.result || []).forEach((s: any) =>
        lines.push({
          label: legendOf(props.targets[i].legend, s.metric || {}, JSON.stringify(s.metric || {})),
          points: (s.values || []).map((p: [number, string]) => [p[0], Number(p[1])] as [number, number]),
        }),
      ),
    );
    return lines;
  }, [props.host, props.range]);
  const link = writeView({ exprs: qs, tab: 'graph', range: props.range, step: '', stacked: false });
  return (
    <section class="panel" aria-label={props.title} data-panel={props.title}>
      <h3>
        {props.title} <a href={link} class="small">explore</a>
      </h3>
      <Status st={st} />
      {st.data && (st.data.length ? <Chart lines={st.data} title={props.title} unit={unitFmt(props.unit)} height={200} /> : <p class="muted">No data.</p>)}
    </section>
  );
}

function Stats(props: { host: string; stats: { title: string; unit: string; expr: string }[] }) {
  const st = useLoad(
    () =>
      Promise.all(
        props.stats.map((s) =>
          prom<any>('/api/v1/query', { query: forHost(s.expr, props.host, 15, 3600) }).then(
            (d) => (d.resultType === 'vector' && d.result.length ? Number(d.result[0].value[1]) : d.resultType === 'scalar' ? Number(d.result[1]) : NaN),
            () => NaN,
          ),
        ),
      ),
    [props.host],
  );
  return (
    <dl class="facts stats">
      {props.stats.map((s, i) => (
        <div key={s.title}>
          <dt>{s.title}</dt>
          <dd>{st.data && isFinite(st.data[i]) ? unitFmt(s.unit)(st.data[i]) : '—'}</dd>
        </div>
      ))}
    </dl>
  );
}

function Filesystems(props: { host: string }) {
  const st = useLoad(async () => {
    const m = `{instance=${promStr(props.host)}, fstype!~"tmpfs|overlay|squashfs|ramfs"}`;
    const [size, avail] = await Promise.all([prom<any>('/api/v1/query', { query: `node_filesystem_size_bytes${m}` }), prom<any>('/api/v1/query', { query: `node_filesystem_avail_bytes${m}` })]);
    const key = (s: any) => `${s.metric.device}|${s.metric.mountpoint}`;
    const av = new Map<string, number>((avail.result || []).map((s: any) => [key(s), Number(s.value[1])]));
    return (size.result || []).map((s: any) => ({
      mount: String(s.metric.mountpoint ?? ''),
      device: String(s.metric.device ?? ''),
      fstype: String(s.metric.fstype ?? ''),
      size: Number(s.value[1]),
      avail: av.get(key(s)) ?? NaN,
    }));
  }, [props.host]);
  const rows = useMemo(() => (st.data || []).slice().sort((a: any, b: any) => a.mount.localeCompare(b.mount)), [st.data]);
  return (
    <section class="panel wide" aria-label="Filesystem list" id="filesystems">
      <h3>Filesystems</h3>
      <Status st={st} />
      {rows.length > 0 && (
        <div class="scroll" tabIndex={0} role="region" aria-label="Filesystems table">
          <table class="grid">
            <thead>
              <tr>
                <th scope="col">Mount</th>
                <th scope="col">Device</th>
                <th scope="col">Type</th>
                <th scope="col" class="num">Size</th>
                <th scope="col" class="num">Available</th>
                <th scope="col" class="num">Used</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r: any) => (
                <tr key={r.device + r.mount}>
                  <td class="mono">{r.mount}</td>
                  <td class="mono">{r.device}</td>
                  <td>{r.fstype}</td>
                  <td class="num">{bytes(r.size)}</td>
                  <td class="num">{bytes(r.avail)}</td>
                  <td class="num">{r.size > 0 && isFinite(r.avail) ? `${(100 * (1 - r.avail / r.size)).toFixed(1)}%` : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {st.data && rows.length === 0 && <p class="muted">No filesystem metrics.</p>}
    </section>
  );
}

export function Host(props: { host: string }) {
  const loc = useLocation();
  const r = loc.search.get('range') || '1h';
  const range = parseDuration(r) ? r : '1h';
  return (
    <>
      <h1>
        Host <span class="mono">{props.host}</span>
      </h1>
      <div class="controls">
        <label>
          Range{' '}
          <select value={range} onChange={(e) => navigate(`/hosts/${encodeURIComponent(props.host)}?range=${e.currentTarget.value}`, true)}>
            {(RANGES.includes(range) ? RANGES : [range, ...RANGES]).map((x) => (
              <option key={x} value={x}>{x}</option>
            ))}
          </select>
        </label>
        <span class="muted">
          {stepFor(parseDuration(range) || 3600)} s resolution; the panels of the Grafana host dashboard ({HOST_DASHBOARD.uid}) for instance = this host.
        </span>
      </div>
      {HOST_DASHBOARD.sections.map((sec) => (
        <section key={sec.title} aria-label={sec.title || 'Overview'}>
          {sec.title && <h2>{sec.title}</h2>}
          {sec.stats.length > 0 && <Stats host={props.host} stats={sec.stats} />}
          {sec.charts.length > 0 && (
            <div class="panels">
              {sec.charts.map((p) => (
                <Panel key={p.title + props.host} host={props.host} range={range} {...p} />
              ))}
            </div>
          )}
          {sec.title === 'Filesystems' && <Filesystems host={props.host} />}
        </section>
      ))}
    </>
  );
}
