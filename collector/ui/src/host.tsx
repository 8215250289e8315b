// One host's CPU, memory, disk, network, load and filesystems, from node_exporter's
// metric names (what calm-agent ships with job="node", instance=<host>).
import { useMemo } from 'preact/hooks';
import { bytes, navigate, num, parseDuration, prom, promStr, seriesName, useLoad, useLocation } from './lib';
import { Chart, Line } from './chart';
import { Status } from './main';
import { writeView } from './explore';

const RANGES = ['5m', '15m', '1h', '6h', '1d', '7d'];
/** About this many points per series, and never a step under 5 s. */
function stepFor(range: number) {
  return Math.max(5, Math.round(range / 300));
}

/** The host page's panels: title, unit, and queries with `$i` for the instance matcher. */
export const HOST_PANELS: { title: string; unit: (v: number) => string; queries: string[] }[] = [
  { title: 'CPU busy (cores)', unit: num, queries: ['sum by (mode) (rate(node_cpu_seconds_total{$i, mode!="idle"}[1m]))'] },
  { title: 'Memory used', unit: bytes, queries: ['node_memory_MemTotal_bytes{$i} - node_memory_MemAvailable_bytes{$i}', 'node_memory_MemTotal_bytes{$i}'] },
  { title: 'Disk I/O (bytes/s)', unit: bytes, queries: ['sum by (device) (rate(node_disk_read_bytes_total{$i}[1m]))', '-sum by (device) (rate(node_disk_written_bytes_total{$i}[1m]))'] },
  {
    title: 'Network (bytes/s, transmit below 0)',
    unit: bytes,
    queries: ['sum by (device) (rate(node_network_receive_bytes_total{$i, device!="lo"}[1m]))', '-sum by (device) (rate(node_network_transmit_bytes_total{$i, device!="lo"}[1m]))'],
  },
  { title: 'Load average', unit: num, queries: ['node_load1{$i}', 'node_load5{$i}', 'node_load15{$i}'] },
];

function sel(host: string) {
  return `instance=${promStr(host)}`;
}

function Panel(props: { host: string; range: string; title: string; unit: (v: number) => string; queries: string[] }) {
  const qs = props.queries.map((q) => q.split('$i').join(sel(props.host)));
  const st = useLoad(async () => {
    const end = Math.floor(Date.now() / 1000);
    const range = parseDuration(props.range) || 3600;
    const step = stepFor(range);
    const res = await Promise.all(qs.map((q) => prom<any>('/api/v1/query_range', { query: q, start: String(end - range), end: String(end), step: String(step) })));
    const lines: Line[] = [];
    res.forEach((d, i) =>
      (d.result || []).forEach((s: any) =>
        lines.push({
          label: (props.queries.length > 1 && Object.keys(s.metric || {}).length === 0 ? `#${i + 1} ` : '') + seriesName(s.metric || {}),
          points: (s.values || []).map((p: [number, string]) => [p[0], Number(p[1])] as [number, number]),
        }),
      ),
    );
    return lines;
  }, [props.host, props.range]);
  const link = writeView({ exprs: qs, tab: 'graph', range: props.range, step: '', stacked: false });
  return (
    <section class="panel" aria-label={props.title}>
      <h2>
        {props.title} <a href={link} class="small">explore</a>
      </h2>
      <Status st={st} />
      {st.data && (st.data.length ? <Chart lines={st.data} title={props.title} unit={props.unit} height={200} /> : <p class="muted">No data.</p>)}
    </section>
  );
}

function Filesystems(props: { host: string }) {
  const st = useLoad(async () => {
    const m = `{${sel(props.host)}, fstype!~"tmpfs|overlay|squashfs|ramfs"}`;
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
    <section class="panel wide" aria-label="Filesystems">
      <h2>Filesystems</h2>
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
          {stepFor(parseDuration(range) || 3600)} s resolution; series with instance = this host.
        </span>
      </div>
      <div class="panels">
        {HOST_PANELS.map((p) => (
          <Panel key={p.title + props.host} host={props.host} range={range} {...p} />
        ))}
        <Filesystems host={props.host} />
      </div>
    </>
  );
}
